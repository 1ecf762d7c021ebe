//! Carrying out one acknowledged command, from its packages to its result.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, OnceLock},
    time::Duration,
};

use capstan_api::{
    AgentCommand, AgentFacts, CommandBody, CommandOutcome, CommandResult, ScriptCommand,
};
use tokio::{sync::mpsc, time::Instant};
use tokio_util::sync::CancellationToken;

use crate::{
    client::AgentClient,
    facts,
    home::Home,
    output::{self, CHANNEL_LINES, Masker, OutputLog, Shipped},
    packages::PackageCache,
    retry::humanise,
    script::{self, Interpreter, ScriptEnd, ScriptProcess},
};

/// Asks a running command to stop, with the reason its result will give.
#[derive(Debug, Clone, Default)]
pub struct StopSignal {
    token: CancellationToken,
    reason: Arc<OnceLock<String>>,
}

impl StopSignal {
    /// Stops the command; the first reason given is the one reported.
    pub fn stop(&self, reason: &str) {
        let _ = self.reason.set(reason.to_owned());
        self.token.cancel();
    }

    pub fn is_stopped(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Waits until the command is asked to stop; returns why.
    pub async fn stopped(&self) -> String {
        self.token.cancelled().await;
        self.reason
            .get()
            .cloned()
            .unwrap_or_else(|| "cancelled".to_owned())
    }
}

/// How a command ended, before it becomes a [`CommandResult`].
#[derive(Debug, Clone, PartialEq)]
pub struct Ending {
    pub outcome: CommandOutcome,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub facts: Option<AgentFacts>,
}

impl Ending {
    fn failed(error: impl Into<String>) -> Self {
        Self {
            outcome: CommandOutcome::Failed,
            exit_code: None,
            error: Some(error.into()),
            facts: None,
        }
    }

    fn timed_out(timeout: Duration) -> Self {
        Self {
            outcome: CommandOutcome::TimedOut,
            exit_code: None,
            error: Some(format!("timed out after {}", humanise(timeout))),
            facts: None,
        }
    }

    fn cancelled(reason: String) -> Self {
        Self {
            outcome: CommandOutcome::Cancelled,
            exit_code: None,
            error: Some(reason),
            facts: None,
        }
    }
}

/// Everything a command needs from the agent.
#[derive(Debug, Clone)]
pub struct Executor {
    home: Home,
    client: AgentClient,
    cache: PackageCache,
    agent_name: String,
}

impl Executor {
    pub fn new(home: Home, client: AgentClient, agent_name: &str) -> Self {
        Self {
            cache: PackageCache::new(home.packages()),
            home,
            client,
            agent_name: agent_name.to_owned(),
        }
    }

    pub fn client(&self) -> &AgentClient {
        &self.client
    }

    /// Carries out the command, sends its output, and returns its result, unless
    /// `give_up` ended the sending first (the agent is going away).
    pub async fn run(
        &self,
        command: &AgentCommand,
        stop: &StopSignal,
        give_up: &CancellationToken,
    ) -> Option<CommandResult> {
        let masker = match &command.body {
            CommandBody::Script(script) => output::masker_for(&script.variables),
            CommandBody::HealthCheck => Masker::default(),
        };
        let (lines_tx, lines_rx) = mpsc::channel(CHANNEL_LINES);
        let log = OutputLog::new(masker, lines_tx);
        let shipper = tokio::spawn(output::ship(
            lines_rx,
            self.client.clone(),
            command.id,
            give_up.clone(),
        ));
        let ending = self.execute(command, &log, stop).await;
        let error = match &ending.error {
            Some(error) => Some(log.mask(error).await),
            None => None,
        };
        let outputs = log.finish().await;
        drop(log);
        let shipped = shipper.await.unwrap_or(Shipped::Abandoned);
        if shipped == Shipped::Abandoned {
            return None;
        }
        Some(CommandResult {
            outcome: ending.outcome,
            exit_code: ending.exit_code,
            error,
            outputs,
            facts: ending.facts,
        })
    }

    /// Carries out the command, writing what happens to `log`.
    pub async fn execute(
        &self,
        command: &AgentCommand,
        log: &OutputLog,
        stop: &StopSignal,
    ) -> Ending {
        match &command.body {
            CommandBody::HealthCheck => Ending {
                outcome: CommandOutcome::Succeeded,
                exit_code: None,
                error: None,
                facts: Some(facts::gather(self.home.root())),
            },
            CommandBody::Script(script) => {
                let ending = self.execute_script(command, script, log, stop).await;
                let line = match ending.outcome {
                    CommandOutcome::Succeeded => "the script exited with code 0",
                    _ => ending.error.as_deref().unwrap_or("the command failed"),
                };
                log.agent(line).await;
                ending
            }
        }
    }

    async fn execute_script(
        &self,
        command: &AgentCommand,
        script: &ScriptCommand,
        log: &OutputLog,
        stop: &StopSignal,
    ) -> Ending {
        let timeout = Duration::from_millis(command.timeout_ms);
        // A timeout too large to add to the clock means no practical limit.
        let deadline = Instant::now()
            .checked_add(timeout)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600));
        let mut env = match script_env(command, script, &self.agent_name) {
            Ok(env) => env,
            Err(error) => return Ending::failed(error),
        };
        let interpreter = match Interpreter::find(script.syntax) {
            Ok(interpreter) => interpreter,
            Err(error) => return Ending::failed(error),
        };

        let fetch = async {
            let mut found = Vec::new();
            for package in &script.packages {
                let path = self.cache.fetch(&self.client, package, log).await?;
                found.push((package_variable(&package.id), path));
            }
            Ok::<_, String>(found)
        };
        let fetched = tokio::select! {
            fetched = fetch => fetched,
            () = tokio::time::sleep_until(deadline) => return Ending::timed_out(timeout),
            reason = stop.stopped() => return Ending::cancelled(reason),
        };
        match fetched {
            Ok(found) => env.extend(
                found
                    .into_iter()
                    .map(|(name, path)| (name, path.display().to_string())),
            ),
            Err(error) => return Ending::failed(error),
        }

        let workspace = match Workspace::prepare(&self.home, command.id, script).await {
            Ok(workspace) => workspace,
            Err(error) => return Ending::failed(error),
        };
        let script_file = self
            .home
            .scripts()
            .join(format!("{}.{}", command.id, interpreter.extension));
        if let Err(e) = write_script(&script_file, &script.script).await {
            workspace.clean_up().await;
            return Ending::failed(format!(
                "cannot write the script to {}: {e}",
                script_file.display()
            ));
        }
        let process = ScriptProcess {
            interpreter: &interpreter,
            script_file: &script_file,
            working_dir: &workspace.dir,
            env: &env,
        };
        let end = script::run(process, log, deadline, stop).await;
        let _ = tokio::fs::remove_file(&script_file).await;
        workspace.clean_up().await;
        match end {
            Ok(ScriptEnd::Exited(0)) => Ending {
                outcome: CommandOutcome::Succeeded,
                exit_code: Some(0),
                error: None,
                facts: None,
            },
            Ok(ScriptEnd::Exited(code)) => Ending {
                exit_code: Some(code),
                ..Ending::failed(format!("the script exited with code {code}"))
            },
            Ok(ScriptEnd::Signalled(signal)) => {
                Ending::failed(format!("the script was killed by {signal}"))
            }
            Ok(ScriptEnd::TimedOut) => Ending::timed_out(timeout),
            Ok(ScriptEnd::Stopped(reason)) => Ending::cancelled(reason),
            Err(error) => Ending::failed(error),
        }
    }
}

/// The environment a script gets on top of the agent's: its variables, then the
/// agent's own, which win a clash.
fn script_env(
    command: &AgentCommand,
    script: &ScriptCommand,
    agent_name: &str,
) -> Result<Vec<(String, String)>, String> {
    let mut env = Vec::with_capacity(script.variables.len() + 3);
    for variable in &script.variables {
        let name = &variable.name;
        if name.is_empty() || name.contains(['=', '\0']) {
            return Err(format!(
                "variable `{name}` cannot be passed to the script: an environment variable's name cannot be empty or hold `=` or NUL"
            ));
        }
        if variable.value.contains('\0') {
            return Err(format!(
                "variable `{name}` cannot be passed to the script: its value holds a NUL character"
            ));
        }
        env.push((name.clone(), variable.value.clone()));
    }
    env.push(("CAPSTAN_TASK_ID".to_owned(), command.task_id.to_string()));
    env.push(("CAPSTAN_COMMAND_ID".to_owned(), command.id.to_string()));
    env.push(("CAPSTAN_AGENT_NAME".to_owned(), agent_name.to_owned()));
    Ok(env)
}

/// `CAPSTAN_PACKAGE_<ID>`: the id upper-cased, other than letters and digits as `_`.
pub fn package_variable(package_id: &str) -> String {
    let id: String = package_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("CAPSTAN_PACKAGE_{id}")
}

/// Where a script runs: the directory it names, or a fresh one removed afterwards.
struct Workspace {
    dir: PathBuf,
    fresh: bool,
}

impl Workspace {
    async fn prepare(home: &Home, command_id: i64, script: &ScriptCommand) -> Result<Self, String> {
        if let Some(dir) = &script.working_directory {
            let dir = PathBuf::from(dir);
            return match tokio::fs::metadata(&dir).await {
                Ok(metadata) if metadata.is_dir() => Ok(Self { dir, fresh: false }),
                Ok(_) => Err(format!(
                    "the working directory {} is not a directory on this agent",
                    dir.display()
                )),
                Err(e) => Err(format!(
                    "the working directory {} cannot be used on this agent: {e}",
                    dir.display()
                )),
            };
        }
        let dir = home.work().join(command_id.to_string());
        // Left over from a run cut short by a crash: start clean.
        let _ = tokio::fs::remove_dir_all(&dir).await;
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| format!("cannot create the working directory {}: {e}", dir.display()))?;
        Ok(Self { dir, fresh: true })
    }

    async fn clean_up(self) {
        if self.fresh {
            if let Err(e) = tokio::fs::remove_dir_all(&self.dir).await {
                tracing::warn!(
                    "cannot remove the working directory {}: {e}",
                    self.dir.display()
                );
            }
        }
    }
}

/// Writes the script readable only by the agent's user: it may embed secrets.
async fn write_script(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    use tokio::io::AsyncWriteExt;

    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir).await?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true).mode(0o600);
    let mut file = tokio::fs::OpenOptions::from(options).open(path).await?;
    file.write_all(text.as_bytes()).await?;
    file.flush().await
}

#[cfg(test)]
mod tests {
    use capstan_api::{CommandVariable, OutputLine, OutputStream, ScriptSyntax};

    use super::*;
    use crate::testing::TempDir;

    struct Fixture {
        _dir: TempDir,
        home: Home,
        executor: Executor,
    }

    fn fixture() -> Fixture {
        let dir = TempDir::new();
        let home = Home::new(dir.path().join("home"));
        home.create().unwrap();
        // Nothing here downloads, so the server is never called.
        let client = AgentClient::new("http://127.0.0.1:9", None).unwrap();
        let executor = Executor::new(home.clone(), client, "web01");
        Fixture {
            _dir: dir,
            home,
            executor,
        }
    }

    fn script_command(
        id: i64,
        syntax: ScriptSyntax,
        script: &str,
    ) -> (AgentCommand, ScriptCommand) {
        let body = ScriptCommand {
            syntax,
            script: script.to_owned(),
            variables: Vec::new(),
            working_directory: None,
            packages: Vec::new(),
        };
        let command = AgentCommand {
            id,
            task_id: 900 + id,
            timeout_ms: 60_000,
            body: CommandBody::Script(body.clone()),
        };
        (command, body)
    }

    fn with_body(mut command: AgentCommand, body: ScriptCommand) -> AgentCommand {
        command.body = CommandBody::Script(body);
        command
    }

    /// Runs the command to its end; returns the ending and every line it wrote.
    async fn execute(fixture: &Fixture, command: &AgentCommand) -> (Ending, Vec<OutputLine>) {
        execute_with(fixture, command, &StopSignal::default()).await
    }

    async fn execute_with(
        fixture: &Fixture,
        command: &AgentCommand,
        stop: &StopSignal,
    ) -> (Ending, Vec<OutputLine>) {
        let masker = match &command.body {
            CommandBody::Script(script) => output::masker_for(&script.variables),
            CommandBody::HealthCheck => Masker::default(),
        };
        let (lines_tx, mut lines_rx) = mpsc::channel(10_000);
        let log = OutputLog::new(masker, lines_tx);
        let ending = fixture.executor.execute(command, &log, stop).await;
        log.finish().await;
        drop(log);
        let mut lines = Vec::new();
        while let Some(line) = lines_rx.recv().await {
            lines.push(line);
        }
        (ending, lines)
    }

    fn texts(lines: &[OutputLine], stream: OutputStream) -> Vec<&str> {
        lines
            .iter()
            .filter(|l| l.stream == stream)
            .map(|l| l.text.as_str())
            .collect()
    }

    /// The pid a script printed as `child <pid>`.
    fn child_pid(lines: &[OutputLine]) -> i32 {
        lines
            .iter()
            .find_map(|l| l.text.strip_prefix("child "))
            .expect("the script printed its child's pid")
            .parse()
            .unwrap()
    }

    /// Whether a process is gone (or a zombie waiting for its reaper), within 3 s.
    async fn process_gone(pid: i32) -> bool {
        for _ in 0..60 {
            match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                Err(_) => return true,
                Ok(stat) => {
                    let state = stat.rsplit(')').next().unwrap_or("").trim_start();
                    if state.starts_with('Z') || state.starts_with('X') {
                        return true;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    #[tokio::test]
    async fn a_script_streams_stdout_and_stderr_numbered_in_order() {
        let fixture = fixture();
        let (command, _) = script_command(
            1,
            ScriptSyntax::Bash,
            "echo one\nsleep 0.2\necho two >&2\nsleep 0.2\necho three\nprintf 'no newline'",
        );
        let (ending, lines) = execute(&fixture, &command).await;
        assert_eq!(ending.outcome, CommandOutcome::Succeeded, "{ending:?}");
        assert_eq!(ending.exit_code, Some(0));
        let seen: Vec<_> = lines
            .iter()
            .map(|l| (l.seq, l.stream, l.text.as_str()))
            .collect();
        assert_eq!(
            seen,
            [
                (1, OutputStream::Stdout, "one"),
                (2, OutputStream::Stderr, "two"),
                (3, OutputStream::Stdout, "three"),
                (4, OutputStream::Stdout, "no newline"),
                (5, OutputStream::Agent, "the script exited with code 0"),
            ]
        );
    }

    #[tokio::test]
    async fn exit_codes_and_signals_decide_the_outcome() {
        let fixture = fixture();
        let (command, _) = script_command(2, ScriptSyntax::Bash, "echo failing\nexit 3");
        let (ending, lines) = execute(&fixture, &command).await;
        assert_eq!(ending.outcome, CommandOutcome::Failed);
        assert_eq!(ending.exit_code, Some(3));
        assert_eq!(
            ending.error.as_deref(),
            Some("the script exited with code 3")
        );
        assert_eq!(
            texts(&lines, OutputStream::Agent),
            ["the script exited with code 3"]
        );

        let (command, _) = script_command(3, ScriptSyntax::Sh, "kill -KILL $$");
        let (ending, _) = execute(&fixture, &command).await;
        assert_eq!(ending.outcome, CommandOutcome::Failed);
        assert_eq!(ending.exit_code, None);
        assert_eq!(
            ending.error.as_deref(),
            Some("the script was killed by SIGKILL")
        );
    }

    #[tokio::test]
    async fn sensitive_values_never_appear_in_the_output() {
        let fixture = fixture();
        let (command, mut body) = script_command(
            4,
            ScriptSyntax::Bash,
            "echo \"user=$DB_USER password=$DB_PASSWORD\"\necho \"$DB_PASSWORD\" >&2\n\
             echo \"##capstan[set-output name='Dsn' value='db://$DB_USER:$DB_PASSWORD@h']\"",
        );
        body.variables = vec![
            CommandVariable {
                name: "DB_USER".to_owned(),
                value: "app".to_owned(),
                sensitive: false,
            },
            CommandVariable {
                name: "DB_PASSWORD".to_owned(),
                value: "pa55w0rd".to_owned(),
                sensitive: true,
            },
        ];
        let command = with_body(command, body);
        let (ending, lines) = execute(&fixture, &command).await;
        assert_eq!(ending.outcome, CommandOutcome::Succeeded);
        assert_eq!(
            texts(&lines, OutputStream::Stdout),
            ["user=app password=********"]
        );
        assert_eq!(texts(&lines, OutputStream::Stderr), ["********"]);
        assert!(lines.iter().all(|l| !l.text.contains("pa55w0rd")));
        assert_eq!(
            texts(&lines, OutputStream::Agent)[0],
            "set output variable Dsn (its value is not shown: it holds a sensitive value)"
        );
    }

    #[tokio::test]
    async fn scripts_get_their_variables_and_a_fresh_working_directory() {
        let fixture = fixture();
        let (command, mut body) = script_command(
            5,
            ScriptSyntax::Sh,
            "echo \"$GREETING $CAPSTAN_TASK_ID $CAPSTAN_COMMAND_ID $CAPSTAN_AGENT_NAME\"\npwd\n\
             echo \"token=${CAPSTAN_REGISTRATION_TOKEN:-unset}\"\n\
             echo \"##capstan[set-output name='Ready' value='True']\"",
        );
        body.variables = vec![CommandVariable {
            name: "GREETING".to_owned(),
            value: "hello".to_owned(),
            sensitive: false,
        }];
        let command = with_body(command, body);
        let (ending, lines) = execute(&fixture, &command).await;
        assert_eq!(ending.outcome, CommandOutcome::Succeeded, "{ending:?}");
        let work = fixture.home.work().join("5");
        assert_eq!(
            texts(&lines, OutputStream::Stdout),
            ["hello 905 5 web01", work.to_str().unwrap(), "token=unset",]
        );
        assert!(
            !work.exists(),
            "the fresh working directory is removed afterwards"
        );
        assert!(
            !fixture.home.scripts().join("5.sh").exists(),
            "the script file too"
        );
        assert_eq!(
            texts(&lines, OutputStream::Agent),
            [
                "set output variable Ready to \"True\"",
                "the script exited with code 0"
            ]
        );
    }

    #[tokio::test]
    async fn a_given_working_directory_must_exist_and_is_kept() {
        let fixture = fixture();
        let existing = TempDir::new();
        let (command, mut body) = script_command(6, ScriptSyntax::Bash, "pwd");
        body.working_directory = Some(existing.path().display().to_string());
        let (ending, lines) = execute(&fixture, &with_body(command.clone(), body.clone())).await;
        assert_eq!(ending.outcome, CommandOutcome::Succeeded);
        assert_eq!(
            texts(&lines, OutputStream::Stdout),
            [existing.path().to_str().unwrap()]
        );
        assert!(existing.path().exists());

        body.working_directory = Some("/nonexistent/capstan".to_owned());
        let (ending, lines) = execute(&fixture, &with_body(command, body)).await;
        assert_eq!(ending.outcome, CommandOutcome::Failed);
        let error = ending.error.unwrap();
        assert!(
            error.starts_with(
                "the working directory /nonexistent/capstan cannot be used on this agent"
            ),
            "{error}"
        );
        assert_eq!(texts(&lines, OutputStream::Agent), [error.as_str()]);
    }

    #[tokio::test]
    async fn a_timeout_kills_the_script_and_everything_it_started() {
        let fixture = fixture();
        let (mut command, _) = script_command(
            7,
            ScriptSyntax::Bash,
            "sleep 1000 &\necho \"child $!\"\nwait",
        );
        command.timeout_ms = 1_000;
        let started = Instant::now();
        let (ending, lines) = execute(&fixture, &command).await;
        assert_eq!(ending.outcome, CommandOutcome::TimedOut);
        assert_eq!(ending.error.as_deref(), Some("timed out after 1s"));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert!(
            process_gone(child_pid(&lines)).await,
            "the background sleep survived"
        );
        assert_eq!(
            texts(&lines, OutputStream::Agent).last(),
            Some(&"timed out after 1s")
        );
    }

    #[tokio::test]
    async fn a_script_that_ignores_sigterm_is_killed_after_the_grace() {
        let fixture = fixture();
        let (mut command, _) = script_command(
            8,
            ScriptSyntax::Bash,
            "trap '' TERM\necho ready\nwhile true; do sleep 0.1; done",
        );
        command.timeout_ms = 300;
        let started = Instant::now();
        let (ending, _) = execute(&fixture, &command).await;
        assert_eq!(ending.outcome, CommandOutcome::TimedOut);
        let took = started.elapsed();
        assert!(
            took >= script::KILL_GRACE && took < script::KILL_GRACE + Duration::from_secs(3),
            "{took:?}"
        );
    }

    #[tokio::test]
    async fn cancel_stops_the_group_and_reports_cancelled() {
        let fixture = fixture();
        let (command, _) = script_command(
            9,
            ScriptSyntax::Bash,
            "sleep 1000 &\necho \"child $!\"\nwait",
        );
        let stop = StopSignal::default();
        let canceller = {
            let stop = stop.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(500)).await;
                stop.stop("cancelled");
            })
        };
        let (ending, lines) = execute_with(&fixture, &command, &stop).await;
        canceller.await.unwrap();
        assert_eq!(ending.outcome, CommandOutcome::Cancelled);
        assert_eq!(ending.error.as_deref(), Some("cancelled"));
        assert!(
            process_gone(child_pid(&lines)).await,
            "the background sleep survived"
        );
    }

    #[tokio::test]
    async fn processes_left_behind_by_a_finished_script_are_stopped() {
        let fixture = fixture();
        let (command, _) =
            script_command(10, ScriptSyntax::Bash, "sleep 1000 &\necho \"child $!\"");
        let started = Instant::now();
        let (ending, lines) = execute(&fixture, &command).await;
        assert_eq!(ending.outcome, CommandOutcome::Succeeded);
        assert!(started.elapsed() < Duration::from_secs(4));
        assert!(
            process_gone(child_pid(&lines)).await,
            "the background sleep survived"
        );
        assert!(
            texts(&lines, OutputStream::Agent)
                .contains(&"stopped the processes the script left running in its process group")
        );
    }

    #[tokio::test]
    async fn bad_variables_and_missing_interpreters_fail_clearly() {
        let fixture = fixture();
        let (command, mut body) = script_command(11, ScriptSyntax::Bash, "true");
        body.variables = vec![CommandVariable {
            name: "A=B".to_owned(),
            value: String::new(),
            sensitive: false,
        }];
        let (ending, _) = execute(&fixture, &with_body(command, body)).await;
        assert_eq!(ending.outcome, CommandOutcome::Failed);
        assert!(
            ending
                .error
                .unwrap()
                .starts_with("variable `A=B` cannot be passed")
        );

        if script::find_on_path("pwsh").is_none() && script::find_on_path("powershell").is_none() {
            let (command, _) = script_command(12, ScriptSyntax::PowerShell, "Write-Output hi");
            let (ending, _) = execute(&fixture, &command).await;
            assert_eq!(ending.outcome, CommandOutcome::Failed);
            let error = ending.error.unwrap();
            assert!(
                error.starts_with("this agent cannot run powershell scripts: pwsh or powershell is not on its PATH"),
                "{error}"
            );
        }
    }

    #[tokio::test]
    async fn a_health_check_answers_with_facts() {
        let fixture = fixture();
        let command = AgentCommand {
            id: 13,
            task_id: 1,
            timeout_ms: 1_000,
            body: CommandBody::HealthCheck,
        };
        let (ending, lines) = execute(&fixture, &command).await;
        assert_eq!(ending.outcome, CommandOutcome::Succeeded);
        let facts = ending.facts.unwrap();
        assert_eq!(facts.version, crate::VERSION);
        assert!(facts.shells.contains(&ScriptSyntax::Bash));
        assert!(lines.is_empty());
    }

    #[test]
    fn package_variables_are_named_from_the_id() {
        assert_eq!(package_variable("MyApp"), "CAPSTAN_PACKAGE_MYAPP");
        assert_eq!(package_variable("my.app-2"), "CAPSTAN_PACKAGE_MY_APP_2");
    }
}
