//! Pauses between attempts, and logs that report a run of failures once instead of
//! once per attempt.

use std::time::{Duration, Instant};

use rand::Rng;
use tokio_util::sync::CancellationToken;

use crate::client::{AgentClient, CallError};

/// First pause after a failure.
pub const BACKOFF_BASE: Duration = Duration::from_millis(500);
/// Longest pause; also the pause while the credential is refused.
pub const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// How often a failure that goes on is mentioned again.
const REMIND_EVERY: Duration = Duration::from_secs(300);

/// Exponential backoff with full jitter: each pause is uniform in `[0, min(cap, base·2ⁿ)]`,
/// so agents that lost the server together do not come back together.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    failures: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(BACKOFF_BASE, BACKOFF_CAP)
    }
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap,
            failures: 0,
        }
    }

    /// The pause before the next attempt.
    pub fn next_pause(&mut self) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(2u32.saturating_pow(self.failures.min(20)))
            .min(self.cap);
        self.failures = self.failures.saturating_add(1);
        rand::rng().random_range(Duration::ZERO..=ceiling)
    }

    /// The pause while the credential is refused: long, but jittered so a fleet of
    /// disabled agents does not knock in step. Never zero, unlike a full-jitter pause.
    pub fn long_pause(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        rand::rng().random_range(self.cap / 2..=self.cap)
    }

    /// The pause for `error`: long when the credential is refused.
    pub fn pause_after(&mut self, error: &CallError) -> Duration {
        if error.is_unauthorized() {
            self.long_pause()
        } else {
            self.next_pause()
        }
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// A run of failures of one kind of call, logged when it starts, when the kind of
/// failure changes, every few minutes while it lasts, and when it ends.
#[derive(Debug)]
pub struct FailureStreak {
    what: String,
    since: Option<Instant>,
    last_logged: Option<Instant>,
    last_kind: &'static str,
    failures: u64,
}

impl FailureStreak {
    /// `what` names the call in messages, e.g. "polling for commands".
    pub fn new(what: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            since: None,
            last_logged: None,
            last_kind: "",
            failures: 0,
        }
    }

    /// Records a failure; logs it if it starts or changes the streak, or as a reminder.
    pub fn failed(&mut self, error: &CallError, client: &AgentClient) {
        let now = Instant::now();
        let since = *self.since.get_or_insert(now);
        self.failures += 1;
        let kind = kind_of(error);
        let due = match self.last_logged {
            None => true,
            Some(at) => kind != self.last_kind || now.duration_since(at) >= REMIND_EVERY,
        };
        if !due {
            tracing::debug!("{} failed again: {error}", self.what);
            return;
        }
        self.last_logged = Some(now);
        self.last_kind = kind;
        let failing_for = humantime::format_duration(round_secs(now.duration_since(since)));
        let attempts = self.failures;
        if error.is_unauthorized() {
            tracing::error!(
                agent.name = client.agent_name(),
                server.url = client.server(),
                "{} failed: the server {} refuses the credential of agent `{}`: {}; \
                 the credential was revoked or the agent disabled. Retrying every \
                 {}s until an administrator re-enables it (failing for {failing_for})",
                self.what,
                client.server(),
                client.agent_name(),
                error.detail(),
                BACKOFF_CAP.as_secs(),
            );
        } else if attempts == 1 {
            tracing::warn!("{} failed: {error}; retrying with backoff", self.what);
        } else {
            tracing::warn!(
                "{} still failing after {attempts} attempts over {failing_for}: {error}",
                self.what
            );
        }
    }

    /// Records a success; logs the end of a streak.
    pub fn succeeded(&mut self) {
        if let Some(since) = self.since.take() {
            tracing::info!(
                "{} works again after failing for {} ({} attempts)",
                self.what,
                humantime::format_duration(round_secs(since.elapsed())),
                self.failures
            );
        }
        self.last_logged = None;
        self.last_kind = "";
        self.failures = 0;
    }

    /// How long the current streak has lasted.
    pub fn failing_for(&self) -> Option<Duration> {
        self.since.map(|since| since.elapsed())
    }
}

fn kind_of(error: &CallError) -> &'static str {
    if error.is_unauthorized() {
        "unauthorized"
    } else if error.status().is_some() {
        "error status"
    } else {
        "unreachable"
    }
}

fn round_secs(duration: Duration) -> Duration {
    Duration::from_secs(duration.as_secs())
}

/// A duration for people, to the millisecond: `30s`, `1m 30s`, `250ms`.
pub fn humanise(duration: Duration) -> String {
    let millis = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    humantime::format_duration(Duration::from_millis(millis)).to_string()
}

/// Why [`until_accepted`] stopped without success.
#[derive(Debug)]
pub enum GaveUp {
    /// The server refused for good (404, 409, another 4xx other than 401 and 429).
    Refused(CallError),
    /// `stop` was cancelled first.
    Stopped,
}

/// Repeats `call` until it succeeds, the server refuses it for good, or `stop` is
/// cancelled. Transient failures and a refused credential are waited out.
pub async fn until_accepted<T, F, Fut>(
    what: &str,
    client: &AgentClient,
    stop: &CancellationToken,
    mut call: F,
) -> Result<T, GaveUp>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, CallError>>,
{
    let mut backoff = Backoff::default();
    let mut streak = FailureStreak::new(what);
    loop {
        let outcome = tokio::select! {
            () = stop.cancelled() => return Err(GaveUp::Stopped),
            outcome = call() => outcome,
        };
        match outcome {
            Ok(value) => {
                streak.succeeded();
                return Ok(value);
            }
            Err(error) if error.is_transient() || error.is_unauthorized() => {
                streak.failed(&error, client);
                let pause = backoff.pause_after(&error);
                tokio::select! {
                    () = stop.cancelled() => return Err(GaveUp::Stopped),
                    () = tokio::time::sleep(pause) => {}
                }
            }
            Err(error) => return Err(GaveUp::Refused(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_to_the_cap_and_start_over_after_reset() {
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        for failures in 0..12u32 {
            let ceiling = (Duration::from_millis(500) * 2u32.pow(failures)).min(BACKOFF_CAP);
            let pause = backoff.next_pause();
            assert!(pause <= ceiling, "pause {pause:?} above {ceiling:?}");
        }
        // Full jitter: after many failures the pauses spread over the whole range.
        let pauses: Vec<_> = (0..200).map(|_| backoff.next_pause()).collect();
        assert!(pauses.iter().any(|p| *p < Duration::from_secs(10)));
        assert!(pauses.iter().any(|p| *p > Duration::from_secs(20)));
        backoff.reset();
        assert!(backoff.next_pause() <= Duration::from_millis(500));
    }

    #[test]
    fn the_credential_pause_is_long_but_jittered() {
        let mut backoff = Backoff::default();
        for _ in 0..50 {
            let pause = backoff.long_pause();
            assert!(
                pause >= BACKOFF_CAP / 2 && pause <= BACKOFF_CAP,
                "{pause:?}"
            );
        }
    }
}
