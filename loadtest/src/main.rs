//! Capstan's load generators, run by hand; figures go to `docs/benchmarks.md`.
//!
//! `capstan-loadtest queue-anchor <drain|e2e|latency>` is the task queue's candidate
//! for the side-by-side PostgreSQL queue benchmark (`PGQA_EXTRA_CMD`): it starts real
//! `capstan server` processes on the harness's database and prints one JSON line per
//! figure.

mod nodes;
mod queue_anchor;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let result = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["queue-anchor", mode] => runtime.block_on(queue_anchor::run(mode)),
        _ => {
            eprintln!("usage: capstan-loadtest queue-anchor <drain|e2e|latency>");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("capstan-loadtest: {e:#}");
            ExitCode::FAILURE
        }
    }
}
