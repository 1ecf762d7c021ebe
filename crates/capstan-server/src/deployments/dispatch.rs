//! The deployment's one watcher of its agent commands: whatever number of targets run
//! at once, one loop reads their results and output (woken by NOTIFY, checked every
//! half second anyway), relays the output into the task's log, ends commands whose
//! agent went offline or outlived their deadline, and hands each outcome to the target
//! waiting for it.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use capstan_core::CommandState;
use capstan_db::{deployments, mailbox};
use tokio::{sync::oneshot, task::JoinHandle, time::Instant};

use crate::{node::NodeContext, runner::TaskLog};

/// How often results are read when no notification comes.
const FALLBACK_POLL: Duration = Duration::from_millis(500);
/// How often targets with open commands are checked for being offline.
const OFFLINE_CHECK: Duration = Duration::from_secs(5);

/// Copies the output waiting for the task's log into it, each line under its agent's
/// name.
async fn relay(
    db: &sqlx::PgPool,
    task_id: i64,
    log: &TaskLog,
    names: &Mutex<HashMap<i64, String>>,
) -> Result<(), capstan_db::DbError> {
    let lines = mailbox::take_output(db, task_id).await?;
    if lines.is_empty() {
        return Ok(());
    }
    let names = names.lock().expect("names lock");
    for line in lines {
        let agent = names.get(&line.command_id).map_or("agent", String::as_str);
        let text = format!("{agent}: {}", line.text);
        match line.stream.as_str() {
            "stderr" => log.warn(text),
            _ => log.info(text),
        }
    }
    Ok(())
}

/// How a command ended, as a target sees it.
#[derive(Debug, Clone)]
pub struct Ended {
    pub state: CommandState,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub outputs: serde_json::Value,
    /// The agent was not heard from: it went offline rather than failing the action.
    pub offline: bool,
}

struct Waiting {
    agent_id: i64,
    agent: String,
    deadline: Instant,
    done: oneshot::Sender<Ended>,
}

type Table = Arc<Mutex<HashMap<i64, Waiting>>>;

/// The watcher; stops when dropped.
pub struct Dispatcher {
    waiting: Table,
    names: Arc<Mutex<HashMap<i64, String>>>,
    wake: Arc<tokio::sync::Notify>,
    handle: JoinHandle<()>,
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

impl Dispatcher {
    /// Starts watching the commands of `task_id`. An agent not heard from for
    /// `offline_after` while it has an open command is taken as offline.
    pub fn start(
        ctx: Arc<NodeContext>,
        task_id: i64,
        log: TaskLog,
        offline_after: Duration,
    ) -> Self {
        let waiting: Table = Arc::default();
        let names: Arc<Mutex<HashMap<i64, String>>> = Arc::default();
        let wake = Arc::new(tokio::sync::Notify::new());
        let handle = tokio::spawn(watch(
            ctx,
            task_id,
            log,
            offline_after,
            waiting.clone(),
            names.clone(),
            wake.clone(),
        ));
        Self {
            waiting,
            names,
            wake,
            handle,
        }
    }

    /// Relays the output still waiting, as the run ends.
    pub async fn flush(&self, ctx: &NodeContext, task_id: i64, log: &TaskLog) {
        if let Err(e) = relay(&ctx.pools.api, task_id, log, &self.names).await {
            tracing::warn!(
                task.id = task_id,
                "cannot relay the deployment's last output: {e}"
            );
        }
    }

    /// Waits for command `id` of `agent` to end, at most `allowed` from now.
    pub fn watch(
        &self,
        id: i64,
        agent_id: i64,
        agent: &str,
        allowed: Duration,
    ) -> oneshot::Receiver<Ended> {
        let (done, ended) = oneshot::channel();
        self.names
            .lock()
            .expect("names lock")
            .insert(id, agent.to_owned());
        self.waiting.lock().expect("waiting lock").insert(
            id,
            Waiting {
                agent_id,
                agent: agent.to_owned(),
                deadline: Instant::now() + allowed,
                done,
            },
        );
        self.wake.notify_one();
        ended
    }
}

async fn watch(
    ctx: Arc<NodeContext>,
    task_id: i64,
    log: TaskLog,
    offline_after: Duration,
    waiting: Table,
    names: Arc<Mutex<HashMap<i64, String>>>,
    wake: Arc<tokio::sync::Notify>,
) {
    let mut waker = ctx.agents.tasks.subscribe(task_id);
    let mut last_offline_check = Instant::now();
    loop {
        tokio::select! {
            _ = waker.changes.changed() => {}
            () = wake.notified() => {}
            () = tokio::time::sleep(FALLBACK_POLL) => {}
        }
        if let Err(e) = round(
            &ctx,
            task_id,
            &log,
            offline_after,
            &waiting,
            &names,
            &mut last_offline_check,
        )
        .await
        {
            // The database comes back or the lease goes: either way the next round
            // or the runner decides.
            tracing::warn!(
                task.id = task_id,
                "cannot read the deployment's commands: {e}"
            );
        }
    }
}

async fn round(
    ctx: &NodeContext,
    task_id: i64,
    log: &TaskLog,
    offline_after: Duration,
    waiting: &Table,
    names: &Mutex<HashMap<i64, String>>,
    last_offline_check: &mut Instant,
) -> Result<(), capstan_db::DbError> {
    let db = &ctx.pools.api;
    let ids: Vec<i64> = waiting
        .lock()
        .expect("waiting lock")
        .keys()
        .copied()
        .collect();
    // Results first, then output: an agent stores a command's output before its
    // result, so every line of a command read as finished is relayed before the
    // target waiting for it hears the outcome.
    let finished = if ids.is_empty() {
        Vec::new()
    } else {
        mailbox::finished(db, &ids).await?
    };
    relay(db, task_id, log, names).await?;
    if ids.is_empty() {
        return Ok(());
    }
    for done in finished {
        if let Some(w) = waiting.lock().expect("waiting lock").remove(&done.id) {
            let _ = w.done.send(Ended {
                state: done.state,
                exit_code: done.exit_code,
                error: done.error,
                outputs: done.outputs,
                offline: false,
            });
        }
    }
    let now = Instant::now();
    let mut ended: Vec<(i64, String, bool)> = waiting
        .lock()
        .expect("waiting lock")
        .iter()
        .filter(|(_, w)| w.deadline <= now)
        .map(|(id, w)| {
            (
                *id,
                format!("{} did not report within its time limit", w.agent),
                false,
            )
        })
        .collect();
    if last_offline_check.elapsed() >= OFFLINE_CHECK {
        *last_offline_check = now;
        let agents: Vec<(i64, i64, String)> = waiting
            .lock()
            .expect("waiting lock")
            .iter()
            .map(|(id, w)| (*id, w.agent_id, w.agent.clone()))
            .collect();
        let ids: Vec<i64> = agents.iter().map(|(_, a, _)| *a).collect();
        let online: HashMap<i64, bool> =
            deployments::agents_online(db, &ids, offline_after.as_secs_f64())
                .await?
                .into_iter()
                .collect();
        for (id, agent_id, agent) in agents {
            if !online.get(&agent_id).copied().unwrap_or(false)
                && !ended.iter().any(|(e, ..)| *e == id)
            {
                ended.push((
                    id,
                    format!(
                        "{agent} went offline: not heard from for {} (or disabled)",
                        humantime::format_duration(offline_after)
                    ),
                    true,
                ));
            }
        }
    }
    for (id, why, offline) in ended {
        mailbox::expire(db, &[id], &why).await?;
        if let Some(w) = waiting.lock().expect("waiting lock").remove(&id) {
            let _ = w.done.send(Ended {
                state: CommandState::TimedOut,
                exit_code: None,
                error: Some(why),
                outputs: serde_json::json!({}),
                offline,
            });
        }
    }
    Ok(())
}
