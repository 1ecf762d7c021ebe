//! Running one script process: its interpreter, its process group, its output, and
//! stopping it and everything it started.
//!
//! Each script leads a process group of its own, so a timeout or a cancel reaches the
//! children it started too (`sleep 1000 &`), and processes it leaves behind when it
//! exits are stopped as well: a finished command leaves nothing running.

use std::{
    ffi::OsString,
    os::unix::{fs::PermissionsExt, process::ExitStatusExt},
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    time::Duration,
};

use capstan_api::{OutputStream, ScriptSyntax};
use nix::{
    errno::Errno,
    sys::signal::{Signal, killpg},
    unistd::Pid,
};
use tokio::{
    io::{AsyncRead, BufReader},
    process::Child,
    task::JoinSet,
    time::Instant,
};

use crate::{
    command::StopSignal,
    output::{LineReader, MAX_LINE_BYTES, OutputLog},
};

/// How long a process group has between SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(5);
/// How long output is still read after the script's group is gone. Only a process
/// that left the group (with `setsid`) can hold the pipes open past that.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// How a script ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptEnd {
    Exited(i32),
    /// Killed by a signal it did not get from the agent, e.g. `SIGSEGV`.
    Signalled(String),
    TimedOut,
    /// Stopped by the agent, for the given reason.
    Stopped(String),
}

/// The program that runs a script of some syntax, and how it is told the file.
#[derive(Debug, Clone)]
pub struct Interpreter {
    pub program: PathBuf,
    leading_args: &'static [&'static str],
    /// The extension the script file needs (PowerShell runs only `.ps1` files).
    pub extension: &'static str,
}

impl Interpreter {
    /// Finds the interpreter for `syntax` on the PATH.
    pub fn find(syntax: ScriptSyntax) -> Result<Self, String> {
        let (names, leading_args, extension): (&[&str], _, _) = match syntax {
            ScriptSyntax::Bash => (&["bash"], &[][..], "sh"),
            ScriptSyntax::Sh => (&["sh"], &[][..], "sh"),
            ScriptSyntax::PowerShell => (
                &["pwsh", "powershell"],
                &["-NoLogo", "-NonInteractive", "-File"][..],
                "ps1",
            ),
        };
        let program = names.iter().find_map(|name| find_on_path(name));
        match program {
            Some(program) => Ok(Self {
                program,
                leading_args,
                extension,
            }),
            None => Err(format!(
                "this agent cannot run {} scripts: {} is not on its PATH ({})",
                syntax.as_str(),
                names.join(" or "),
                std::env::var("PATH").unwrap_or_default(),
            )),
        }
    }

    fn args(&self, script: &Path) -> Vec<OsString> {
        let mut args: Vec<OsString> = self.leading_args.iter().map(OsString::from).collect();
        args.push(script.as_os_str().to_owned());
        args
    }
}

/// The executable file `name` in a directory of the PATH.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// One script process to start.
#[derive(Debug)]
pub struct ScriptProcess<'a> {
    pub interpreter: &'a Interpreter,
    pub script_file: &'a Path,
    pub working_dir: &'a Path,
    /// Added to the agent's own environment.
    pub env: &'a [(String, String)],
}

/// Runs the script until it ends, `deadline` passes, or `stop` is signalled, writing
/// its stdout and stderr to `log`. Whatever the end, its process group is gone after.
pub async fn run(
    process: ScriptProcess<'_>,
    log: &OutputLog,
    deadline: Instant,
    stop: &StopSignal,
) -> Result<ScriptEnd, String> {
    let mut command = tokio::process::Command::new(&process.interpreter.program);
    command
        .args(process.interpreter.args(process.script_file))
        .current_dir(process.working_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        // The token registers agents; a script has no business seeing it.
        .env_remove("CAPSTAN_REGISTRATION_TOKEN")
        .envs(process.env.iter().map(|(k, v)| (k, v)));
    let mut child = command.spawn().map_err(|e| {
        format!(
            "cannot start {}: {e}",
            process.interpreter.program.display()
        )
    })?;
    let group = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw)
        .ok_or("the script exited before the agent could see it")?;
    let mut guard = GroupGuard(Some(group));

    let mut readers = JoinSet::new();
    if let Some(stdout) = child.stdout.take() {
        readers.spawn(read_lines(stdout, OutputStream::Stdout, log.clone()));
    }
    if let Some(stderr) = child.stderr.take() {
        readers.spawn(read_lines(stderr, OutputStream::Stderr, log.clone()));
    }

    let end = tokio::select! {
        status = child.wait() => match status {
            Ok(status) => end_of(status),
            Err(e) => {
                log.agent(&format!("lost track of the script: {e}")).await;
                ScriptEnd::Signalled("an unknown cause".to_owned())
            }
        },
        () = tokio::time::sleep_until(deadline) => {
            terminate(group, &mut child).await;
            ScriptEnd::TimedOut
        }
        reason = stop.stopped() => {
            terminate(group, &mut child).await;
            ScriptEnd::Stopped(reason)
        }
    };
    let had_leftovers = clear_group(group).await;
    guard.disarm();
    if had_leftovers {
        log.agent("stopped the processes the script left running in its process group")
            .await;
    }

    let drained = tokio::time::timeout(DRAIN_GRACE, async {
        while readers.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        readers.shutdown().await;
        log.agent(
            "stopped reading output: a process that left the script's process group still holds it open",
        )
        .await;
    }
    Ok(end)
}

async fn read_lines(pipe: impl AsyncRead + Unpin, stream: OutputStream, log: OutputLog) {
    let mut lines = LineReader::new(BufReader::new(pipe), MAX_LINE_BYTES);
    loop {
        match lines.next_line().await {
            Ok(Some(line)) => log.script(stream, &line).await,
            Ok(None) => return,
            Err(e) => {
                let name = match stream {
                    OutputStream::Stderr => "stderr",
                    _ => "stdout",
                };
                log.agent(&format!("stopped reading {name}: {e}")).await;
                return;
            }
        }
    }
}

fn end_of(status: ExitStatus) -> ScriptEnd {
    match (status.code(), status.signal()) {
        (Some(code), _) => ScriptEnd::Exited(code),
        (None, Some(signal)) => ScriptEnd::Signalled(signal_name(signal)),
        (None, None) => ScriptEnd::Signalled("an unknown cause".to_owned()),
    }
}

fn signal_name(signal: i32) -> String {
    Signal::try_from(signal)
        .map(|s| s.as_str().to_owned())
        .unwrap_or_else(|_| format!("signal {signal}"))
}

/// SIGTERM to the group; SIGKILL if the script has not exited after [`KILL_GRACE`].
async fn terminate(group: Pid, child: &mut Child) {
    let _ = killpg(group, Signal::SIGTERM);
    if tokio::time::timeout(KILL_GRACE, child.wait())
        .await
        .is_err()
    {
        let _ = killpg(group, Signal::SIGKILL);
        let _ = child.wait().await;
    }
}

/// Stops what is left of the group once its leader is gone, the same way: SIGTERM,
/// then SIGKILL after [`KILL_GRACE`]. Returns whether anything was left.
async fn clear_group(group: Pid) -> bool {
    if !group_exists(group) {
        return false;
    }
    let _ = killpg(group, Signal::SIGTERM);
    let until = Instant::now() + KILL_GRACE;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if !group_exists(group) {
            return true;
        }
    }
    let _ = killpg(group, Signal::SIGKILL);
    true
}

fn group_exists(group: Pid) -> bool {
    !matches!(killpg(group, None), Err(Errno::ESRCH))
}

/// Kills the group if the run is abandoned half-way (its future dropped on a hard
/// shutdown), so no script outlives the agent's interest in it.
struct GroupGuard(Option<Pid>);

impl GroupGuard {
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(group) = self.0.take() {
            let _ = killpg(group, Signal::SIGKILL);
        }
    }
}
