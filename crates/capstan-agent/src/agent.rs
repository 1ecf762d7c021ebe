//! The agent's main loop: one long poll at a time; each new command journaled,
//! acknowledged and started alongside the others; cancels passed on; and on SIGTERM
//! an ordered stop.
//!
//! Shutdown: stop polling → wait up to the grace for running commands → cancel the
//! rest (SIGTERM, then SIGKILL to each process group) → report them → exit. Reports
//! that still cannot get through after [`REPORT_GRACE`] are abandoned.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use capstan_api::{AgentCommand, CommandBody, CommandOutcome, CommandResult, PollResponse};
use tokio::{task::JoinSet, time::Instant};
use tokio_util::sync::CancellationToken;

use crate::{
    client::AgentClient,
    command::{Executor, StopSignal},
    home::{Home, Registration},
    journal::{Ended, Journal, Seen},
    retry::{BACKOFF_BASE, Backoff, FailureStreak, GaveUp, humanise, until_accepted},
};

/// How long cancelled commands have, after the shutdown grace, to be stopped and
/// reported (stopping alone may take [`crate::script::KILL_GRACE`]).
pub const REPORT_GRACE: Duration = Duration::from_secs(20);

/// Why `cancel` names a command the agent is not running.
pub const NOT_RUNNING: &str = "not running on this agent";

/// What the server's cancel does to a running command.
const CANCELLED: &str = "cancelled";

/// How many cancels of commands not running here the agent remembers.
const REMEMBER_NOT_RUNNING: usize = 1000;

/// What a command started by an earlier process of this agent, with no end recorded,
/// is reported as when it comes back.
pub const RESTARTED: &str = "the agent restarted while the command ran; it was not run again";

/// What a command's end, answered again from the journal, says of the error it had.
const FROM_JOURNAL: &str =
    "reported again from the agent's journal, which keeps how a command ended but not its error";

/// What the agent's own shutdown does to a command still running after the grace.
const STOPPED_BY_SHUTDOWN: &str = "the agent was stopped before the command finished";

/// Settings of `capstan-agent run`.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// How long a poll waits for work.
    pub poll_wait: Duration,
    /// How long running commands may go on after SIGTERM.
    pub shutdown_grace: Duration,
}

/// Running commands, by id, with how to stop each. A command stays here until its
/// result is accepted, so a late cancel never races its real result.
type Running = Arc<Mutex<HashMap<i64, StopSignal>>>;

/// A registered agent, ready to poll.
#[derive(Debug)]
pub struct Agent {
    client: AgentClient,
    executor: Executor,
    /// Shared with the commands' tasks, which record how each ended.
    journal: Arc<tokio::sync::Mutex<Journal>>,
    running: Running,
    tasks: JoinSet<()>,
    /// Cancelled when the agent stops waiting for output and results to go out.
    give_up: CancellationToken,
    agent_id: i64,
    /// Commands the server cancelled that were not running here: a cancel of one
    /// again is no news, though it is answered again.
    not_running: HashSet<i64>,
}

impl Agent {
    /// Prepares the home and opens the journal.
    pub async fn open(home: Home, registration: Registration) -> anyhow::Result<Self> {
        home.create()
            .map_err(|e| anyhow::anyhow!("cannot prepare the agent's home: {e}"))?;
        let client = AgentClient::new(&registration.server, registration.ca_cert.as_deref())?
            .with_credential(&registration.name, registration.credential.clone());
        let journal = Journal::open(home.journal())
            .await
            .map_err(|e| anyhow::anyhow!("cannot open the journal of started commands: {e}"))?;
        Ok(Self {
            executor: Executor::new(home, client.clone(), &registration.name),
            client,
            journal: Arc::new(tokio::sync::Mutex::new(journal)),
            running: Arc::default(),
            tasks: JoinSet::new(),
            give_up: CancellationToken::new(),
            agent_id: registration.agent_id,
            not_running: HashSet::new(),
        })
    }

    /// Polls until `shutdown`, then stops in order. Returns once nothing runs.
    pub async fn run(mut self, settings: RunSettings, shutdown: CancellationToken) {
        tracing::info!(
            agent.name = self.client.agent_name(),
            agent.id = self.agent_id,
            "agent {} (id {}) polling {} for commands ({} started here before)",
            self.client.agent_name(),
            self.agent_id,
            self.client.server(),
            self.journal.lock().await.len()
        );
        let mut backoff = Backoff::default();
        // Pauses after answers that bring nothing new grow up to an idle poll's wait:
        // then an agent polls no more often than an idle one, whatever a node answers.
        let mut quiet = Backoff::new(BACKOFF_BASE, settings.poll_wait.max(BACKOFF_BASE));
        let mut streak = FailureStreak::new("polling for commands");
        loop {
            self.reap();
            let asked = Instant::now();
            let cancelling = self.cancelling();
            let polled = tokio::select! {
                () = shutdown.cancelled() => break,
                polled = self.client.poll(settings.poll_wait, &cancelling) => polled,
            };
            let pause = match polled {
                Ok(response) => {
                    streak.succeeded();
                    backoff.reset();
                    let news = self.handle(response, &shutdown).await;
                    // An answer after a long wait is an idle poll's, not a loop.
                    if news || asked.elapsed() >= settings.poll_wait / 2 {
                        quiet.reset();
                        continue;
                    }
                    let pause = quiet.next_pause().max(BACKOFF_BASE);
                    tracing::debug!(
                        "the poll was answered early with nothing new; polling again in {}",
                        humanise(pause)
                    );
                    pause
                }
                Err(error) => {
                    streak.failed(&error, &self.client);
                    backoff.pause_after(&error)
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(pause) => {}
            }
        }
        self.shut_down(settings.shutdown_grace).await;
    }

    /// Acts on one poll's answer: starts new commands, then passes on cancels (a
    /// command may be in both lists). Returns whether the answer held anything new:
    /// a command not started here before, or a cancel not acted on before.
    pub async fn handle(&mut self, response: PollResponse, shutdown: &CancellationToken) -> bool {
        let mut news = false;
        for command in response.commands {
            if shutdown.is_cancelled() {
                break;
            }
            news |= self.start(command, shutdown).await;
        }
        for command_id in response.cancel {
            news |= self.cancel(command_id).await;
        }
        news
    }

    /// Ids of the running commands the server cancelled, until their result is taken:
    /// each poll names them, so that a node does not answer with their cancel again.
    pub fn cancelling(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = lock(&self.running)
            .iter()
            .filter(|(_, stop)| stop.is_stopped())
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Ids of the commands running now.
    pub fn running(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = lock(&self.running).keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Waits until no command runs.
    pub async fn wait_idle(&mut self) {
        while self.tasks.join_next().await.is_some() {}
    }

    /// Returns whether the command is new here: false when it was started before or
    /// cannot be recorded as started.
    async fn start(&mut self, command: AgentCommand, shutdown: &CancellationToken) -> bool {
        let id = command.id;
        let seen = self.journal.lock().await.seen(id);
        if let Some(seen) = seen {
            self.seen_before(id, seen).await;
            return false;
        }
        if let Err(error) = self.journal.lock().await.record(id).await {
            tracing::error!(
                command.id = id,
                "not starting command {id}: it cannot be recorded as started, so it could run twice: {error}"
            );
            return false;
        }
        let what = format!("acknowledging command {id}");
        let client = self.client.clone();
        match until_accepted(&what, &client, shutdown, || client.ack(id)).await {
            Ok(()) => {}
            Err(GaveUp::Refused(error)) if error.is_gone() => {
                tracing::info!(
                    command.id = id,
                    "not running command {id}: the server took it back ({})",
                    error.detail()
                );
                return true;
            }
            Err(GaveUp::Refused(error)) => {
                tracing::error!(
                    command.id = id,
                    "not running command {id}: acknowledging it failed: {error}"
                );
                return true;
            }
            Err(GaveUp::Stopped) => {
                tracing::warn!(
                    command.id = id,
                    "not running command {id}: the agent is stopping and the server has not taken its acknowledgement"
                );
                return true;
            }
        }

        let stop = StopSignal::default();
        lock(&self.running).insert(id, stop.clone());
        let entry = RunningEntry {
            id,
            running: self.running.clone(),
        };
        let kind = match &command.body {
            CommandBody::Script(script) => format!("{} script", script.syntax.as_str()),
            CommandBody::HealthCheck => "health check".to_owned(),
        };
        tracing::info!(
            command.id = id,
            task.id = command.task_id,
            "running command {id} of task {} ({kind})",
            command.task_id
        );
        let executor = self.executor.clone();
        let give_up = self.give_up.clone();
        let journal = self.journal.clone();
        self.tasks.spawn(async move {
            let _entry = entry;
            let started = Instant::now();
            let Some(result) = executor.run(&command, &stop, &give_up).await else {
                tracing::warn!(
                    command.id = id,
                    "gave up sending the output of command {id}; its result is not reported"
                );
                return;
            };
            let ended = Ended {
                outcome: result.outcome,
                exit_code: result.exit_code,
            };
            // Before the report, so a result lost with a restart can still be given.
            if let Err(error) = journal.lock().await.record_end(id, ended).await {
                tracing::warn!(
                    command.id = id,
                    "cannot record how command {id} ended: {error}; should it come back, it is reported failed"
                );
            }
            report(executor.client(), id, &result, &give_up, started).await;
        });
        true
    }

    /// Answers a command that comes back though the journal says it was started here:
    /// never by running it again.
    async fn seen_before(&mut self, id: i64, seen: Seen) {
        let result = match seen {
            // Running, or refused by the server: its acknowledgement was lost.
            Seen::Started => None,
            Seen::Interrupted => Some(CommandResult {
                outcome: CommandOutcome::Failed,
                exit_code: None,
                error: Some(RESTARTED.to_owned()),
                outputs: Default::default(),
                facts: None,
            }),
            Seen::Ended(ended) => Some(CommandResult {
                outcome: ended.outcome,
                exit_code: ended.exit_code,
                error: (ended.outcome != CommandOutcome::Succeeded)
                    .then(|| FROM_JOURNAL.to_owned()),
                outputs: Default::default(),
                facts: None,
            }),
        };
        let Some(result) = result else {
            // Its acknowledgement was lost. Acknowledging is safe to repeat, running
            // is not. If this ack fails too, the next poll retries it.
            match self.client.ack(id).await {
                Ok(()) => tracing::info!(
                    command.id = id,
                    "acknowledged command {id} again; it was started here before, so it is not run again"
                ),
                Err(error) => tracing::debug!(
                    command.id = id,
                    "acknowledging command {id} again failed: {error}"
                ),
            }
            return;
        };
        // The server takes a result once and answers a repeat as accepted. If this one
        // fails, the command comes back on a later poll and is answered again.
        match self.client.post_result(id, &result).await {
            Ok(()) => tracing::info!(
                command.id = id,
                outcome = result.outcome.as_str(),
                "command {id} came back though it was started here before; reported it {} from the journal{}",
                result.outcome.as_str().replace('_', " "),
                if seen == Seen::Interrupted {
                    format!(": {RESTARTED}")
                } else {
                    String::new()
                }
            ),
            Err(error) if error.is_gone() => {
                tracing::debug!(command.id = id, "command {id} is already settled: {error}")
            }
            Err(error) => tracing::warn!(
                command.id = id,
                "cannot report command {id} again from the journal: {error}; will answer when it comes back"
            ),
        }
    }

    /// Returns whether the cancel is new here.
    async fn cancel(&mut self, command_id: i64) -> bool {
        let stop = lock(&self.running).get(&command_id).cloned();
        if let Some(stop) = stop {
            if stop.is_stopped() {
                return false;
            }
            tracing::info!(command.id = command_id, "cancelling command {command_id}");
            stop.stop(CANCELLED);
            return true;
        }
        // The server believes the command runs here, but it does not (say the agent
        // restarted mid-run): tell it so, or it keeps asking.
        let result = CommandResult {
            outcome: CommandOutcome::Cancelled,
            exit_code: None,
            error: Some(NOT_RUNNING.to_owned()),
            outputs: Default::default(),
            facts: None,
        };
        if self.not_running.len() >= REMEMBER_NOT_RUNNING {
            self.not_running.clear();
        }
        let news = self.not_running.insert(command_id);
        match self.client.post_result(command_id, &result).await {
            Ok(()) => tracing::info!(
                command.id = command_id,
                "reported command {command_id} as cancelled: it is not running on this agent"
            ),
            Err(error) if error.is_gone() => tracing::debug!(
                command.id = command_id,
                "command {command_id} is already settled: {error}"
            ),
            Err(error) => tracing::warn!(
                command.id = command_id,
                "cannot report command {command_id} as not running here: {error}; will answer the next cancel"
            ),
        }
        news
    }

    /// Collects finished command tasks; a panic is logged, never silent.
    fn reap(&mut self) {
        while let Some(joined) = self.tasks.try_join_next() {
            if let Err(error) = joined {
                if error.is_panic() {
                    tracing::error!("a command's task panicked: {error}");
                }
            }
        }
    }

    async fn shut_down(mut self, grace: Duration) {
        self.reap();
        let running = self.running();
        if running.is_empty() && self.tasks.is_empty() {
            tracing::info!("stopped polling; no command was running");
            return;
        }
        tracing::info!(
            "stopped polling; waiting up to {} for {} running command(s): {}",
            humanise(grace),
            running.len(),
            ids(&running)
        );
        let started = Instant::now();
        if tokio::time::timeout(grace, self.wait_idle()).await.is_ok() {
            tracing::info!(
                "every command finished within {} of the stop",
                humanise(started.elapsed())
            );
            return;
        }
        let still = self.running();
        tracing::warn!(
            "cancelling {} command(s) still running after {}: {}",
            still.len(),
            humanise(grace),
            ids(&still)
        );
        for stop in lock(&self.running).values() {
            stop.stop(STOPPED_BY_SHUTDOWN);
        }
        if tokio::time::timeout(REPORT_GRACE, self.wait_idle())
            .await
            .is_err()
        {
            let unreported = self.running();
            tracing::warn!(
                "giving up reporting {} command(s) after {}: {}",
                unreported.len(),
                humanise(REPORT_GRACE),
                ids(&unreported)
            );
            self.give_up.cancel();
            // Aborting drops each run; its process group guard kills what is left.
            self.tasks.shutdown().await;
        }
    }
}

/// Sends a command's result until accepted; the log says how it ended.
async fn report(
    client: &AgentClient,
    id: i64,
    result: &CommandResult,
    give_up: &CancellationToken,
    started: Instant,
) {
    let what = format!("reporting the result of command {id}");
    match until_accepted(&what, client, give_up, || client.post_result(id, result)).await {
        Ok(()) => tracing::info!(
            command.id = id,
            outcome = result.outcome.as_str(),
            "command {id} {} after {}{}",
            result.outcome.as_str().replace('_', " "),
            humanise(started.elapsed()),
            result
                .error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ),
        Err(GaveUp::Refused(error)) => tracing::warn!(
            command.id = id,
            "the server does not take the result of command {id}: {}; giving up on it",
            error.detail()
        ),
        Err(GaveUp::Stopped) => tracing::warn!(
            command.id = id,
            "gave up reporting the result of command {id}: the agent is stopping"
        ),
    }
}

/// Removes a command from the running ones when its task ends, however it ends.
struct RunningEntry {
    id: i64,
    running: Running,
}

impl Drop for RunningEntry {
    fn drop(&mut self) {
        lock(&self.running).remove(&self.id);
    }
}

fn lock(running: &Running) -> std::sync::MutexGuard<'_, HashMap<i64, StopSignal>> {
    // Only inserts and removes happen under the lock; a panic cannot leave it half-done.
    running
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn ids(ids: &[i64]) -> String {
    ids.iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use axum::{
        Json, Router,
        extract::{Path, State},
        http::StatusCode,
        routing::{get, post},
    };
    use capstan_api::{OutputBatch, OutputStream, ScriptCommand, ScriptSyntax};
    use secrecy::SecretString;

    use super::*;
    use crate::testing::TempDir;

    /// What the fake server was told, in order.
    #[derive(Debug, Clone)]
    enum Event {
        Ack(i64),
        Output(i64, OutputBatch),
        Result(i64, CommandResult),
    }

    #[derive(Default)]
    struct Fake {
        events: Vec<Event>,
        /// Status to answer acknowledgements of a command with; 200 otherwise.
        ack_status: HashMap<i64, u16>,
        /// Answers for the next polls; an empty answer after a short wait when none.
        polls: VecDeque<PollResponse>,
        /// How many calls, acknowledgements and output batches alike, fail with 503
        /// before they are taken.
        unavailable: u32,
        /// Answered at once to every poll once `polls` is empty, when set.
        always: Option<PollResponse>,
        /// Polls answered so far.
        polled: usize,
        /// Status to answer results of a command with; 200 otherwise.
        result_status: HashMap<i64, u16>,
    }

    impl Fake {
        fn unavailable(&mut self) -> bool {
            let failing = self.unavailable > 0;
            self.unavailable = self.unavailable.saturating_sub(1);
            failing
        }
    }

    type Shared = Arc<Mutex<Fake>>;

    async fn fake_server() -> (String, Shared) {
        let shared = Shared::default();
        let app = Router::new()
            .route(
                "/api/agent/commands",
                get(|State(fake): State<Shared>| async move {
                    let next = {
                        let mut fake = fake.lock().unwrap();
                        fake.polled += 1;
                        fake.polls.pop_front().or_else(|| fake.always.clone())
                    };
                    match next {
                        Some(response) => Json(response),
                        None => {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            Json(PollResponse::default())
                        }
                    }
                }),
            )
            .route(
                "/api/agent/commands/{id}/ack",
                post(
                    |State(fake): State<Shared>, Path(id): Path<i64>| async move {
                        let mut fake = fake.lock().unwrap();
                        fake.events.push(Event::Ack(id));
                        let status = fake.ack_status.get(&id).copied().unwrap_or(200);
                        StatusCode::from_u16(status).unwrap()
                    },
                ),
            )
            .route(
                "/api/agent/commands/{id}/output",
                post(
                    |State(fake): State<Shared>,
                     Path(id): Path<i64>,
                     Json(batch): Json<OutputBatch>| async move {
                        let mut fake = fake.lock().unwrap();
                        if fake.unavailable() {
                            return StatusCode::SERVICE_UNAVAILABLE;
                        }
                        fake.events.push(Event::Output(id, batch));
                        StatusCode::OK
                    },
                ),
            )
            .route(
                "/api/agent/commands/{id}/result",
                post(
                    |State(fake): State<Shared>,
                     Path(id): Path<i64>,
                     Json(result): Json<CommandResult>| async move {
                        let mut fake = fake.lock().unwrap();
                        fake.events.push(Event::Result(id, result));
                        let status = fake.result_status.get(&id).copied().unwrap_or(200);
                        StatusCode::from_u16(status).unwrap()
                    },
                ),
            )
            .route("/packages/my.app/1.0", get(|| async { PACKAGE }))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, shared)
    }

    const PACKAGE: &str = "the package's contents";

    async fn open_agent(server: &str, home: &std::path::Path) -> Agent {
        let registration = Registration {
            server: server.to_owned(),
            agent_id: 1,
            name: "web01".to_owned(),
            credential: SecretString::from("capagt_test".to_owned()),
            ca_cert: None,
        };
        Agent::open(Home::new(home), registration).await.unwrap()
    }

    fn bash(id: i64, script: &str) -> AgentCommand {
        AgentCommand {
            id,
            task_id: 100,
            timeout_ms: 60_000,
            body: CommandBody::Script(ScriptCommand {
                syntax: ScriptSyntax::Bash,
                script: script.to_owned(),
                variables: Vec::new(),
                working_directory: None,
                packages: Vec::new(),
            }),
        }
    }

    fn commands(list: Vec<AgentCommand>) -> PollResponse {
        PollResponse {
            commands: list,
            cancel: Vec::new(),
        }
    }

    fn cancels(ids: Vec<i64>) -> PollResponse {
        PollResponse {
            commands: Vec::new(),
            cancel: ids,
        }
    }

    fn events(fake: &Shared) -> Vec<Event> {
        fake.lock().unwrap().events.clone()
    }

    fn results(fake: &Shared) -> Vec<(i64, CommandResult)> {
        events(fake)
            .into_iter()
            .filter_map(|e| match e {
                Event::Result(id, result) => Some((id, result)),
                _ => None,
            })
            .collect()
    }

    fn acks(fake: &Shared, command_id: i64) -> usize {
        events(fake)
            .iter()
            .filter(|e| matches!(e, Event::Ack(id) if *id == command_id))
            .count()
    }

    #[tokio::test]
    async fn a_command_delivered_again_runs_once_and_is_answered_with_its_end() {
        let (server, fake) = fake_server().await;
        let dir = TempDir::new();
        let marker = dir.path().join("runs");
        let command = bash(1, &format!("echo ran >> {}\necho done", marker.display()));
        let mut agent = open_agent(&server, &dir.path().join("home")).await;
        let shutdown = CancellationToken::new();

        agent
            .handle(commands(vec![command.clone()]), &shutdown)
            .await;
        // The acknowledgement was lost on the way back: the next poll has it again.
        agent
            .handle(commands(vec![command.clone()]), &shutdown)
            .await;
        agent.wait_idle().await;
        // And again after a restart.
        drop(agent);
        let mut agent = open_agent(&server, &dir.path().join("home")).await;
        agent.handle(commands(vec![command]), &shutdown).await;
        agent.wait_idle().await;

        assert_eq!(std::fs::read_to_string(&marker).unwrap(), "ran\n");
        // Once it ended, the journal knows how, and the result is what is repeated.
        assert_eq!(acks(&fake, 1), 2);
        let results = results(&fake);
        assert_eq!(results.len(), 2);
        for (_, result) in &results {
            assert_eq!(result.outcome, CommandOutcome::Succeeded);
            assert_eq!(result.exit_code, Some(0));
        }
    }

    #[tokio::test]
    async fn a_command_cut_off_by_a_restart_is_reported_failed_not_run_again() {
        let (server, fake) = fake_server().await;
        let dir = TempDir::new();
        let home = dir.path().join("home");
        let marker = dir.path().join("runs");
        std::fs::create_dir_all(&home).unwrap();
        // An earlier process journaled the start, then died before the end.
        std::fs::write(home.join("journal"), "1\n").unwrap();
        let command = bash(1, &format!("echo ran >> {}", marker.display()));
        let mut agent = open_agent(&server, &home).await;
        let shutdown = CancellationToken::new();
        agent
            .handle(commands(vec![command.clone()]), &shutdown)
            .await;
        agent.handle(commands(vec![command]), &shutdown).await;
        agent.wait_idle().await;

        assert!(!marker.exists(), "the command ran again");
        assert_eq!(acks(&fake, 1), 0);
        let results = results(&fake);
        assert_eq!(results.len(), 2, "each time it comes back it is answered");
        for (_, result) in &results {
            assert_eq!(result.outcome, CommandOutcome::Failed);
            assert_eq!(result.error.as_deref(), Some(RESTARTED));
        }
    }

    #[tokio::test]
    async fn output_goes_out_numbered_before_the_result() {
        let (server, fake) = fake_server().await;
        let dir = TempDir::new();
        let mut agent = open_agent(&server, dir.path()).await;
        let script = "for i in $(seq 1 1200); do echo \"line $i\"; done\necho oops >&2\nexit 4";
        agent
            .handle(commands(vec![bash(2, script)]), &CancellationToken::new())
            .await;
        agent.wait_idle().await;

        let events = events(&fake);
        let Some(Event::Result(2, result)) = events.last() else {
            panic!("the result is not the last call: {events:?}");
        };
        assert_eq!(result.outcome, CommandOutcome::Failed);
        assert_eq!(result.exit_code, Some(4));
        let lines: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                Event::Output(2, batch) => Some(batch.lines.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        let seqs: Vec<u64> = lines.iter().map(|l| l.seq).collect();
        assert_eq!(seqs, (1..=1202).collect::<Vec<_>>());
        let stdout: Vec<_> = lines
            .iter()
            .filter(|l| l.stream == OutputStream::Stdout)
            .map(|l| l.text.clone())
            .collect();
        assert_eq!(
            stdout,
            (1..=1200).map(|i| format!("line {i}")).collect::<Vec<_>>()
        );
        // The two pipes are read side by side, so only each stream's own order is fixed.
        assert!(
            lines
                .iter()
                .any(|l| l.stream == OutputStream::Stderr && l.text == "oops")
        );
        assert_eq!(lines[1201].text, "the script exited with code 4");
        assert!(
            events
                .iter()
                .filter(|e| matches!(e, Event::Output(..)))
                .count()
                >= 2,
            "1202 lines do not fit one batch"
        );
    }

    #[tokio::test]
    async fn acknowledgements_and_output_are_repeated_until_taken() {
        let (server, fake) = fake_server().await;
        fake.lock().unwrap().unavailable = 2;
        let dir = TempDir::new();
        let mut agent = open_agent(&server, dir.path()).await;
        agent
            .handle(
                commands(vec![bash(7, "echo one\necho two")]),
                &CancellationToken::new(),
            )
            .await;
        // The acknowledgement failed twice before it was taken; only then did it start.
        assert_eq!(acks(&fake, 7), 1);
        fake.lock().unwrap().unavailable = 1;
        agent.wait_idle().await;

        let events = events(&fake);
        let seqs: Vec<u64> = events
            .iter()
            .filter_map(|e| match e {
                Event::Output(7, batch) => Some(batch.lines.iter().map(|l| l.seq)),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(seqs, [1, 2, 3], "the refused batch came again, whole");
        let Some(Event::Result(7, result)) = events.last() else {
            panic!("the result is not the last call: {events:?}");
        };
        assert_eq!(result.outcome, CommandOutcome::Succeeded);
    }

    #[tokio::test]
    async fn a_script_finds_its_verified_package_through_the_environment() {
        use sha2::Digest;

        let (server, fake) = fake_server().await;
        let dir = TempDir::new();
        let mut agent = open_agent(&server, dir.path()).await;
        let mut command = bash(8, "cat \"$CAPSTAN_PACKAGE_MY_APP\"; echo");
        let CommandBody::Script(script) = &mut command.body else {
            unreachable!()
        };
        script.packages = vec![capstan_api::PackageRef {
            id: "my.app".to_owned(),
            version: "1.0".to_owned(),
            sha256: format!("{:x}", sha2::Sha256::digest(PACKAGE)),
            size: PACKAGE.len() as u64,
            download: "/packages/my.app/1.0".to_owned(),
        }];
        agent
            .handle(commands(vec![command]), &CancellationToken::new())
            .await;
        agent.wait_idle().await;

        let lines: Vec<_> = events(&fake)
            .into_iter()
            .filter_map(|e| match e {
                Event::Output(8, batch) => Some(batch.lines),
                _ => None,
            })
            .flatten()
            .collect();
        let stdout: Vec<_> = lines
            .iter()
            .filter(|l| l.stream == OutputStream::Stdout)
            .map(|l| l.text.as_str())
            .collect();
        assert_eq!(stdout, [PACKAGE]);
        assert!(
            lines[0].text.starts_with("downloading package my.app 1.0"),
            "{lines:?}"
        );
        assert_eq!(results(&fake)[0].1.outcome, CommandOutcome::Succeeded);
    }

    #[tokio::test]
    async fn a_command_taken_back_before_its_acknowledgement_does_not_run() {
        let (server, fake) = fake_server().await;
        fake.lock().unwrap().ack_status.insert(3, 409);
        let dir = TempDir::new();
        let marker = dir.path().join("ran");
        let mut agent = open_agent(&server, &dir.path().join("home")).await;
        agent
            .handle(
                commands(vec![bash(3, &format!("touch {}", marker.display()))]),
                &CancellationToken::new(),
            )
            .await;
        agent.wait_idle().await;
        assert!(!marker.exists());
        assert_eq!(acks(&fake, 3), 1);
        assert!(results(&fake).is_empty());
        assert!(agent.running().is_empty());
    }

    #[tokio::test]
    async fn cancel_stops_a_running_command_and_answers_for_unknown_ones() {
        let (server, fake) = fake_server().await;
        let dir = TempDir::new();
        let mut agent = open_agent(&server, dir.path()).await;
        let shutdown = CancellationToken::new();
        agent
            .handle(
                commands(vec![bash(4, "echo started\nsleep 1000")]),
                &shutdown,
            )
            .await;
        assert_eq!(agent.running(), [4]);
        tokio::time::sleep(Duration::from_millis(300)).await;
        agent.handle(cancels(vec![4, 99]), &shutdown).await;
        agent.wait_idle().await;

        let mut results = results(&fake);
        results.sort_by_key(|(id, _)| *id);
        assert_eq!(results.len(), 2, "{results:?}");
        assert_eq!(results[0].0, 4);
        assert_eq!(results[0].1.outcome, CommandOutcome::Cancelled);
        assert_eq!(results[0].1.error.as_deref(), Some(CANCELLED));
        assert_eq!(results[1].0, 99);
        assert_eq!(results[1].1.outcome, CommandOutcome::Cancelled);
        assert_eq!(results[1].1.error.as_deref(), Some(NOT_RUNNING));
    }

    #[tokio::test]
    async fn shutdown_waits_for_the_grace_then_cancels_and_reports() {
        let (server, fake) = fake_server().await;
        fake.lock().unwrap().polls.push_back(commands(vec![
            bash(5, "sleep 0.2\necho quick"),
            bash(6, "sleep 1000"),
        ]));
        let dir = TempDir::new();
        let agent = open_agent(&server, dir.path()).await;
        let shutdown = CancellationToken::new();
        let settings = RunSettings {
            poll_wait: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(1),
        };
        let running = tokio::spawn(agent.run(settings, shutdown.clone()));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let stopping = Instant::now();
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), running)
            .await
            .expect("the agent stops in time")
            .unwrap();
        assert!(stopping.elapsed() >= Duration::from_secs(1));

        let mut results = results(&fake);
        results.sort_by_key(|(id, _)| *id);
        assert_eq!(results.len(), 2, "{results:?}");
        assert_eq!(results[0].1.outcome, CommandOutcome::Succeeded);
        assert_eq!(results[1].1.outcome, CommandOutcome::Cancelled);
        assert_eq!(results[1].1.error.as_deref(), Some(STOPPED_BY_SHUTDOWN));
    }

    /// Polls from `server` for `within`, the agent's wait far longer; how many.
    async fn polls_within(server: &str, fake: &Shared, within: Duration) -> usize {
        polls_within_waiting(server, fake, within, Duration::from_secs(30)).await
    }

    /// Polls from `server` for `within`, each asking to wait `poll_wait`; how many.
    async fn polls_within_waiting(
        server: &str,
        fake: &Shared,
        within: Duration,
        poll_wait: Duration,
    ) -> usize {
        let dir = TempDir::new();
        let agent = open_agent(server, dir.path()).await;
        let shutdown = CancellationToken::new();
        let settings = RunSettings {
            poll_wait,
            shutdown_grace: Duration::from_secs(1),
        };
        let running = tokio::spawn(agent.run(settings, shutdown.clone()));
        tokio::time::sleep(within).await;
        let polled = fake.lock().unwrap().polled;
        shutdown.cancel();
        running.await.unwrap();
        polled
    }

    #[tokio::test]
    async fn answers_at_once_that_bring_nothing_new_are_followed_by_growing_pauses() {
        // A cancel of a command not running here, whose report the server keeps
        // refusing as if it were failing: every answer is the same.
        let (server, fake) = fake_server().await;
        {
            let mut fake = fake.lock().unwrap();
            fake.always = Some(cancels(vec![99]));
            fake.result_status.insert(99, 503);
        }
        let polled = polls_within(&server, &fake, Duration::from_secs(3)).await;
        assert!(polled <= 8, "{polled} polls in 3 s");

        // Empty answers at once, as from a node that stops.
        let (server, fake) = fake_server().await;
        fake.lock().unwrap().always = Some(PollResponse::default());
        let polled = polls_within(&server, &fake, Duration::from_secs(3)).await;
        assert!(polled <= 8, "{polled} polls in 3 s");
    }

    /// The pauses stop growing at the poll's own wait: an agent kept busy by a node
    /// that answers at once polls no less often than an idle one.
    #[tokio::test]
    async fn the_pauses_after_early_answers_grow_no_longer_than_a_polls_wait() {
        let (server, fake) = fake_server().await;
        fake.lock().unwrap().always = Some(PollResponse::default());
        // Every pause is exactly the base here: uncapped, they would reach 4 s.
        let wait = BACKOFF_BASE;
        let polled = polls_within_waiting(&server, &fake, Duration::from_secs(4), wait).await;
        assert!(
            polled >= 7,
            "{polled} polls in 4 s, pausing at most {wait:?}"
        );
    }

    #[tokio::test]
    async fn polls_name_the_commands_being_cancelled_until_their_result_is_taken() {
        let (server, fake) = fake_server().await;
        let dir = TempDir::new();
        let mut agent = open_agent(&server, dir.path()).await;
        let shutdown = CancellationToken::new();
        fake.lock().unwrap().result_status.insert(4, 503);
        agent
            .handle(commands(vec![bash(4, "sleep 1000")]), &shutdown)
            .await;
        assert!(agent.cancelling().is_empty());
        agent.handle(cancels(vec![4]), &shutdown).await;
        assert_eq!(agent.cancelling(), [4]);
        // Stopped, and its result refused: still held, still being cancelled. How soon
        // the first report goes out depends on the machine's load.
        let deadline = Instant::now() + Duration::from_secs(10);
        while results(&fake).is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(!results(&fake).is_empty());
        assert_eq!(agent.cancelling(), [4]);
        fake.lock().unwrap().result_status.clear();
        agent.wait_idle().await;
        assert!(agent.cancelling().is_empty());
    }
}
