//! The cluster task queue: caps, FIFO, exactly-once runs, cancel, concurrency keys,
//! drain and cap changes (in-process nodes), and lost nodes (real processes).

mod bad_input;
mod lost_nodes;
mod queue;
