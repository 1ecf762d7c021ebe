//! The cluster task queue: caps, FIFO, exactly-once runs, cancel, concurrency keys,
//! drain and cap changes (in-process nodes), lost nodes (real processes), and task logs.

mod bad_input;
mod logs;
mod lost_nodes;
mod notifications;
mod queue;
mod unknown_states;
