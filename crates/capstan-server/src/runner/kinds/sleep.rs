//! `sleep`: waits, then succeeds or fails, logging a tick now and then if asked to. A
//! diagnostic for operators (does the cluster run tasks? which node takes them? do
//! logs come through?) and the workhorse of the queue's and the logs' tests.

use std::time::Duration;

use capstan_core::SleepArgs;
use futures::{FutureExt, future::BoxFuture};

use super::{Prepared, Ran, TaskKind, TaskRun, parse_args};

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

    fn run(&self, run: TaskRun) -> BoxFuture<'static, Result<Ran, String>> {
        async move {
            let args: SleepArgs = parse_args(&run.args)?;
            match args.log_every_ms {
                Some(every) => tick(&run, &args, Duration::from_millis(every)).await,
                None if args.ms > 0 => tokio::time::sleep(Duration::from_millis(args.ms)).await,
                None => {}
            }
            if args.fail {
                return Err(format!("failed on purpose after {} ms", args.ms));
            }
            Ok(())
        }
        .map(|ran| ran.map(|()| Ran::Done))
        .boxed()
    }
}

/// Sleeps `args.ms`, logging `tick N` (padded to `log_bytes`) every `every`.
async fn tick(run: &TaskRun, args: &SleepArgs, every: Duration) {
    let until = tokio::time::Instant::now() + Duration::from_millis(args.ms);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let pad = args.log_bytes.unwrap_or(0) as usize;
    for n in 1u64.. {
        tokio::select! {
            () = tokio::time::sleep_until(until) => return,
            _ = ticks.tick() => {}
        }
        let mut line = format!("tick {n}");
        if line.len() < pad {
            line.push(' ');
            line.extend(std::iter::repeat_n('.', pad - line.len()));
        }
        run.log.info(line);
    }
}
