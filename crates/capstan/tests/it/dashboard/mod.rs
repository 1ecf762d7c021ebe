//! The dashboard: the newest deployment of each project × environment, who queued
//! it, whether a newer release waits, what a machine runs, and only what the caller
//! may view.

mod cells;
