//! `sleep`: waits, then succeeds or fails. A diagnostic for operators (does the
//! cluster run tasks? which node takes them?) and the workhorse of the queue's tests.

use std::time::Duration;

use capstan_core::SleepArgs;
use futures::{FutureExt, future::BoxFuture};

use super::{Prepared, TaskKind, TaskRun, parse_args};

pub struct Sleep;

impl TaskKind for Sleep {
    fn name(&self) -> &'static str {
        "sleep"
    }

    fn prepare(&self, args: &serde_json::Value) -> Result<Prepared, String> {
        let parsed: SleepArgs = parse_args(args)?;
        parsed.validate()?;
        Ok(Prepared {
            args: serde_json::to_value(parsed).map_err(|e| e.to_string())?,
            on_node_lost: parsed.on_node_lost,
        })
    }

    fn run(&self, run: TaskRun) -> BoxFuture<'static, Result<(), String>> {
        async move {
            let args: SleepArgs = parse_args(&run.args)?;
            if args.ms > 0 {
                tokio::time::sleep(Duration::from_millis(args.ms)).await;
            }
            if args.fail {
                return Err(format!("failed on purpose after {} ms", args.ms));
            }
            Ok(())
        }
        .boxed()
    }
}
