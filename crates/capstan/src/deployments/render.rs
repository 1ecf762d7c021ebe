//! What a deployment looks like on a terminal: pure functions from the API's answers to
//! lines of text, so they are tested without a server. A grid of 1,000 targets stays
//! readable: one summary line per step, and rows only for the targets that did not
//! succeed.

use std::collections::HashMap;

use capstan_api::deployments::{
    Blocked, BlockedBy, Cell, DeploymentResponse, DeploymentSummary, Intervention,
};
use capstan_core::deployment::{CellState, InterventionAnswer};
use time::OffsetDateTime;

/// Target names wider than this push their line's other columns right instead of
/// widening every line.
const MAX_TARGET_WIDTH: usize = 40;

/// Where one target stands in one step, from the cells of the step's actions on it. A
/// failure shows whatever else the target's other actions did; a step half done is
/// running.
pub fn target_state(cells: &[&Cell]) -> CellState {
    let has = |state: CellState| cells.iter().any(|c| c.state == state);
    for state in [CellState::Failed, CellState::Unknown] {
        if has(state) {
            return state;
        }
    }
    if cells.iter().all(|c| c.state.is_finished()) {
        for state in [CellState::Cancelled, CellState::Excluded] {
            if has(state) {
                return state;
            }
        }
        return if has(CellState::Succeeded) {
            CellState::Succeeded
        } else {
            CellState::Skipped
        };
    }
    if has(CellState::Running) || cells.iter().any(|c| c.state.is_finished()) {
        CellState::Running
    } else if has(CellState::Waiting) {
        CellState::Waiting
    } else {
        CellState::Pending
    }
}

/// Each step's targets and where each stands in it, in the order of `targets`. A step
/// the deployment has not reached has none.
pub fn states_by_step(deployment: &DeploymentResponse) -> Vec<Vec<(&str, CellState)>> {
    let mut cells: HashMap<(u32, &str), Vec<&Cell>> = HashMap::new();
    for cell in &deployment.grid {
        cells
            .entry((cell.step, cell.target.as_str()))
            .or_default()
            .push(cell);
    }
    (0..deployment.steps.len())
        .map(|step| {
            let step = u32::try_from(step).unwrap_or(u32::MAX);
            deployment
                .targets
                .iter()
                .filter_map(|t| {
                    let found = cells.get(&(step, t.name.as_str()))?;
                    Some((t.name.as_str(), target_state(found)))
                })
                .collect()
        })
        .collect()
}

/// How many targets of a step are in each state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepCounts {
    pub name: String,
    /// Targets the step has reached.
    pub total: usize,
    /// Targets that will not change by themselves any more.
    pub finished: usize,
    /// Non-zero counts, in [`CellState::ALL`]'s order.
    pub counts: Vec<(CellState, usize)>,
}

/// Per step, how many targets are in each state.
pub fn step_counts(deployment: &DeploymentResponse) -> Vec<StepCounts> {
    states_by_step(deployment)
        .iter()
        .zip(&deployment.steps)
        .map(|(targets, step)| StepCounts {
            name: step.name.clone(),
            total: targets.len(),
            finished: targets.iter().filter(|(_, s)| s.is_finished()).count(),
            counts: CellState::ALL
                .into_iter()
                .map(|state| (state, targets.iter().filter(|(_, s)| *s == state).count()))
                .filter(|(_, n)| *n > 0)
                .collect(),
        })
        .collect()
}

/// `1000 targets: 997 succeeded, 2 failed, 1 running`, or `not reached`.
pub fn counts_in_words(counts: &StepCounts) -> String {
    if counts.total == 0 {
        return "not reached".to_owned();
    }
    let states: Vec<String> = counts
        .counts
        .iter()
        .map(|(state, n)| format!("{n} {state}"))
        .collect();
    format!(
        "{} target{}: {}",
        counts.total,
        if counts.total == 1 { "" } else { "s" },
        states.join(", ")
    )
}

/// The grid: a summary line per step, then a row per target that did not succeed (or
/// was skipped) in every step it reached, then what went wrong on those targets.
pub fn grid_lines(deployment: &DeploymentResponse) -> Vec<String> {
    let mut lines = Vec::new();
    let counts = step_counts(deployment);
    let name_width = deployment
        .steps
        .iter()
        .map(|s| s.name.chars().count())
        .max()
        .unwrap_or(0)
        .max("STEP".len());
    lines.push(format!("{:<name_width$}  TARGETS", "STEP"));
    for c in &counts {
        lines.push(format!("{:<name_width$}  {}", c.name, counts_in_words(c)));
    }

    let by_step = states_by_step(deployment);
    let lookup: Vec<HashMap<&str, CellState>> = by_step
        .iter()
        .map(|targets| targets.iter().copied().collect())
        .collect();
    let fine = |s: &CellState| matches!(s, CellState::Succeeded | CellState::Skipped);
    let listed: Vec<&str> = deployment
        .targets
        .iter()
        .map(|t| t.name.as_str())
        .filter(|name| {
            lookup
                .iter()
                .any(|step| step.get(name).is_some_and(|s| !fine(s)))
        })
        .collect();
    let reached = deployment
        .targets
        .iter()
        .filter(|t| lookup.iter().any(|step| step.contains_key(t.name.as_str())))
        .count();
    let quiet = reached - listed.len();

    if deployment.grid.is_empty() {
        lines.push(String::new());
        lines.push("no step has started".to_owned());
        return lines;
    }
    if !listed.is_empty() {
        let target_width = listed
            .iter()
            .map(|n| n.chars().count())
            .max()
            .unwrap_or(0)
            .clamp("TARGET".len(), MAX_TARGET_WIDTH);
        let widths: Vec<usize> = deployment
            .steps
            .iter()
            .map(|s| s.name.chars().count().max("succeeded".len()))
            .collect();
        lines.push(String::new());
        let mut header = format!("{:<target_width$}", "TARGET");
        for (step, width) in deployment.steps.iter().zip(&widths) {
            header.push_str(&format!("  {:<width$}", step.name));
        }
        lines.push(header.trim_end().to_owned());
        for name in &listed {
            let mut row = format!("{name:<target_width$}");
            for (step, width) in lookup.iter().zip(&widths) {
                let state = step.get(name).map_or("-", |s| s.as_str());
                row.push_str(&format!("  {state:<width$}"));
            }
            lines.push(row.trim_end().to_owned());
        }
        let errors: Vec<String> = deployment
            .grid
            .iter()
            .filter(|c| listed.contains(&c.target.as_str()))
            .filter_map(|c| {
                let error = c.error.as_deref()?;
                Some(format!(
                    "  {}  {}: {} ({error})",
                    c.target,
                    action_label(deployment, c.step, Some(c.action)),
                    c.state
                ))
            })
            .collect();
        if !errors.is_empty() {
            lines.push(String::new());
            lines.extend(errors);
        }
    }
    if quiet > 0 {
        lines.push(String::new());
        lines.push(if listed.is_empty() {
            format!(
                "every target ({quiet}) succeeded or was skipped in every step it reached"
            )
        } else {
            format!(
                "{quiet} other target{} succeeded or {} skipped in every step {} reached (not listed)",
                if quiet == 1 { "" } else { "s" },
                if quiet == 1 { "was" } else { "were" },
                if quiet == 1 { "it" } else { "they" },
            )
        });
    }
    lines
}

/// `Deploy web`, or `Deploy web / Install` when the step has more than one action.
pub fn action_label(deployment: &DeploymentResponse, step: u32, action: Option<u32>) -> String {
    let Some(grid_step) = deployment.steps.get(step as usize) else {
        return format!("step {step}");
    };
    match action {
        Some(a) if grid_step.actions.len() > 1 => {
            let action = grid_step
                .actions
                .get(a as usize)
                .cloned()
                .unwrap_or_else(|| format!("action {a}"));
            format!("{} / {action}", grid_step.name)
        }
        _ => grid_step.name.clone(),
    }
}

/// `4.2s`, `1m05s`, `2h03m`.
pub fn format_elapsed(elapsed: time::Duration) -> String {
    let ms = elapsed.whole_milliseconds().max(0);
    let seconds = ms / 1000;
    if seconds < 60 {
        // One decimal without rounding up to the next minute.
        format!("{}.{}s", seconds, (ms % 1000) / 100)
    } else if seconds < 3600 {
        format!("{}m{:02}s", seconds / 60, seconds % 60)
    } else {
        format!("{}h{:02}m", seconds / 3600, (seconds % 3600) / 60)
    }
}

fn elapsed(from: Option<OffsetDateTime>, to: Option<OffsetDateTime>) -> Option<String> {
    Some(format_elapsed(to? - from?))
}

/// How wide the target column of finishing lines is.
pub fn target_width(deployment: &DeploymentResponse) -> usize {
    deployment
        .targets
        .iter()
        .map(|t| t.name.chars().count())
        .max()
        .unwrap_or(0)
        .min(MAX_TARGET_WIDTH)
}

/// `web-03  Deploy web  succeeded  4.2s`, or `…  failed  1.0s: why`.
pub fn finished_line(deployment: &DeploymentResponse, cell: &Cell, target_width: usize) -> String {
    let mut line = format!(
        "{:<target_width$}  {}  {}",
        cell.target,
        action_label(deployment, cell.step, Some(cell.action)),
        cell.state
    );
    if let Some(took) = elapsed(cell.started_at, cell.finished_at) {
        line.push_str("  ");
        line.push_str(&took);
    }
    if let Some(error) = &cell.error {
        line.push_str(": ");
        line.push_str(error);
    }
    line
}

/// Which cells have been reported as finished, so each is reported once per run (a
/// retried action that finishes again is reported again).
#[derive(Debug, Default)]
pub struct Finishes {
    reported: HashMap<(u32, String, u32), Option<OffsetDateTime>>,
}

impl Finishes {
    /// A line for every action that ran and finished since the last call. Actions that
    /// never ran (skipped, excluded, cancelled before starting) have no line: the grid
    /// at the end counts them.
    pub fn update(&mut self, deployment: &DeploymentResponse) -> Vec<String> {
        let width = target_width(deployment);
        let mut lines = Vec::new();
        for cell in &deployment.grid {
            if !cell.state.is_finished() || cell.started_at.is_none() {
                continue;
            }
            let key = (cell.step, cell.target.clone(), cell.action);
            if self.reported.get(&key) == Some(&cell.finished_at) {
                continue;
            }
            self.reported.insert(key, cell.finished_at);
            lines.push(finished_line(deployment, cell, width));
        }
        lines
    }
}

/// `Web shop 2.4.0 to Production`, or `rollback of 11: Web shop 2.3.0 to Production`.
pub fn describe(summary: &DeploymentSummary) -> String {
    let what = format!(
        "{} {} to {}",
        summary.project, summary.release, summary.environment
    );
    match summary.rollback_of {
        Some(of) => format!("{}: {what}", rollback_label(summary, of)),
        None => what,
    }
}

/// `rollback of 11`, or `automatic rollback of 11`.
fn rollback_label(summary: &DeploymentSummary, of: i64) -> String {
    if summary.automatic_rollback {
        format!("automatic rollback of {of}")
    } else {
        format!("rollback of {of}")
    }
}

/// The last column of `deployments list`: whether it is a rollback, when it was
/// scheduled for, what superseded it, and its error.
pub fn note(summary: &DeploymentSummary) -> String {
    let rollback = summary.rollback_of.map(|of| rollback_label(summary, of));
    let scheduled = summary
        .deploy_at
        .filter(|_| summary.started_at.is_none())
        .map(|at| format!("scheduled for {}", capstan_api::timestamp::format(at)));
    let superseded = summary
        .superseded_by
        .map(|by| format!("superseded by {by}"));
    // A superseded deployment's error says the same again.
    let error = summary.error.as_deref().filter(|_| superseded.is_none());
    let trigger = summary
        .trigger
        .as_ref()
        .map(capstan_api::deployments::DeploymentTrigger::in_words);
    [
        rollback.as_deref(),
        trigger.as_deref(),
        scheduled.as_deref(),
        superseded.as_deref(),
        error,
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join("; ")
}

/// `deployment 12 (Web shop 2.4.0 to Production) succeeded in 3m12s`, with the error
/// of one that did not.
pub fn headline(summary: &DeploymentSummary) -> String {
    let mut line = format!(
        "deployment {} ({}) {}",
        summary.id,
        describe(summary),
        summary.state
    );
    if let Some(took) = elapsed(summary.started_at, summary.finished_at) {
        line.push_str(" in ");
        line.push_str(&took);
    }
    if let Some(error) = &summary.error {
        line.push_str(": ");
        line.push_str(error);
    }
    line
}

/// Why a queued deployment has not started, and its place in line.
pub fn blocked_sentence(blocked: &Blocked) -> String {
    let reasons = if blocked.summary.is_empty() {
        blocked
            .reasons
            .iter()
            .map(BlockedBy::in_words)
            .collect::<Vec<_>>()
            .join("; ")
    } else {
        blocked.summary.clone()
    };
    format!("{reasons} (position {} in line)", blocked.position)
}

/// The answers an intervention takes: as the server lists them, else its kind's.
pub fn answers_of(intervention: &Intervention) -> Vec<InterventionAnswer> {
    if intervention.answers.is_empty() {
        intervention.kind.answers().to_vec()
    } else {
        intervention.answers.clone()
    }
}

/// `intervention 5 (guided failure) on web-03 in Deploy web: exit code 1`, with its
/// answer once given.
pub fn intervention_sentence(
    deployment: &DeploymentResponse,
    intervention: &Intervention,
) -> String {
    let mut line = format!(
        "intervention {} ({})",
        intervention.id,
        intervention.kind.as_str().replace('_', " ")
    );
    if let Some(target) = &intervention.target {
        line.push_str(" on ");
        line.push_str(target);
    }
    line.push_str(" in ");
    line.push_str(&action_label(
        deployment,
        intervention.step,
        intervention.action,
    ));
    line.push_str(": ");
    line.push_str(&intervention.question);
    if let Some(role) = &intervention.responsible_role {
        line.push_str(&format!(" (for {role})"));
    }
    match &intervention.answer {
        Some(answered) => {
            line.push_str(&format!(
                "; answered {} by {} at {}",
                answered.answer,
                answered.by.who,
                capstan_api::timestamp::format(answered.by.at)
            ));
            if !answered.note.is_empty() {
                line.push_str(&format!(": {}", answered.note));
            }
        }
        None => line.push_str(&format!(
            "; asked at {}, open",
            capstan_api::timestamp::format(intervention.asked_at)
        )),
    }
    line
}

/// The command that answers an open intervention.
pub fn how_to_answer(deployment_id: i64, intervention: &Intervention) -> String {
    let answers = answers_of(intervention);
    let mut line = format!(
        "answer it with `capstan deployments intervene {deployment_id} {} --{}`",
        intervention.id,
        answers.first().map_or("retry", |a| a.as_str())
    );
    if answers.len() > 1 {
        let others: Vec<String> = answers[1..]
            .iter()
            .map(|a| format!("--{}", a.as_str()))
            .collect();
        line.push_str(&format!(" (or {})", others.join(", ")));
    }
    line.push_str(", and `--note TEXT` to say why");
    line
}

/// The answer typed at a prompt: a whole answer or the start of exactly one of
/// `allowed`, whatever its case.
pub fn parse_answer(typed: &str, allowed: &[InterventionAnswer]) -> Option<InterventionAnswer> {
    let typed = typed.trim().to_ascii_lowercase();
    if typed.is_empty() {
        return None;
    }
    if let Some(exact) = allowed.iter().find(|a| a.as_str() == typed) {
        return Some(*exact);
    }
    let mut matching = allowed.iter().filter(|a| a.as_str().starts_with(&typed));
    match (matching.next(), matching.next()) {
        (Some(only), None) => Some(*only),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use capstan_api::deployments::{Actor, Answered, DeploymentOptions, GridStep, GridTarget};
    use capstan_core::deployment::{DeploymentState, InterventionKind};
    use time::macros::datetime;

    use super::*;

    const T0: OffsetDateTime = datetime!(2025-03-01 12:00:00 UTC);

    fn cell(step: u32, target: &str, action: u32, state: CellState) -> Cell {
        let ran = !matches!(
            state,
            CellState::Pending | CellState::Waiting | CellState::Skipped | CellState::Excluded
        );
        Cell {
            step,
            target: target.to_owned(),
            action,
            state,
            waiting_for: None,
            started_at: ran.then_some(T0),
            finished_at: (ran && state.is_finished())
                .then_some(T0 + time::Duration::milliseconds(4_250)),
            exit_code: None,
            command_id: None,
            outputs: serde_json::json!({}),
            error: (state == CellState::Failed).then(|| "exit code 1".to_owned()),
        }
    }

    fn deployment(targets: &[&str], grid: Vec<Cell>) -> DeploymentResponse {
        DeploymentResponse {
            summary: DeploymentSummary {
                id: 12,
                task_id: 40,
                project_id: 1,
                project: "Web shop".to_owned(),
                release_id: 3,
                release: "2.4.0".to_owned(),
                environment_id: 2,
                environment: "Production".to_owned(),
                state: DeploymentState::Running,
                error: None,
                queued_at: T0,
                started_at: Some(T0),
                finished_at: None,
                rollback_of: None,
                automatic_rollback: false,
                deploy_at: None,
                no_deploy_after: None,
                superseded_by: None,
                trigger: None,
            },
            options: DeploymentOptions::default(),
            blocked_by: None,
            stopped_by: None,
            steps: vec![
                GridStep {
                    name: "Install".to_owned(),
                    actions: vec!["Unpack".to_owned(), "Configure".to_owned()],
                },
                GridStep {
                    name: "Deploy web".to_owned(),
                    actions: vec!["Deploy".to_owned()],
                },
            ],
            targets: targets
                .iter()
                .zip(1..)
                .map(|(name, agent_id)| GridTarget {
                    agent_id,
                    name: (*name).to_owned(),
                })
                .collect(),
            grid,
            interventions: Vec::new(),
            approvals: Vec::new(),
        }
    }

    fn guided(answer: Option<Answered>) -> Intervention {
        Intervention {
            id: 5,
            kind: InterventionKind::GuidedFailure,
            step: 1,
            target: Some("web-03".to_owned()),
            action: Some(0),
            question: "exit code 1".to_owned(),
            answers: Vec::new(),
            responsible_role: None,
            asked_at: T0,
            answer,
        }
    }

    #[test]
    fn a_target_fails_a_step_when_any_of_its_actions_failed() {
        let failed = cell(0, "a", 0, CellState::Failed);
        let pending = cell(0, "a", 1, CellState::Pending);
        assert_eq!(target_state(&[&failed, &pending]), CellState::Failed);
    }

    #[test]
    fn a_target_half_way_through_a_step_is_running() {
        let done = cell(0, "a", 0, CellState::Succeeded);
        let pending = cell(0, "a", 1, CellState::Pending);
        assert_eq!(target_state(&[&done, &pending]), CellState::Running);
        let waiting = cell(0, "a", 0, CellState::Waiting);
        assert_eq!(target_state(&[&waiting, &pending]), CellState::Waiting);
        assert_eq!(target_state(&[&pending]), CellState::Pending);
    }

    #[test]
    fn a_target_succeeds_a_step_when_its_actions_succeeded_or_were_skipped() {
        let done = cell(0, "a", 0, CellState::Succeeded);
        let skipped = cell(0, "a", 1, CellState::Skipped);
        assert_eq!(target_state(&[&done, &skipped]), CellState::Succeeded);
        assert_eq!(target_state(&[&skipped]), CellState::Skipped);
        let cancelled = cell(0, "a", 1, CellState::Cancelled);
        assert_eq!(target_state(&[&done, &cancelled]), CellState::Cancelled);
    }

    #[test]
    fn steps_count_targets_per_state_and_unreached_steps_say_so() {
        let d = deployment(
            &["web-01", "web-02", "web-03"],
            vec![
                cell(0, "web-01", 0, CellState::Succeeded),
                cell(0, "web-01", 1, CellState::Succeeded),
                cell(0, "web-02", 0, CellState::Succeeded),
                cell(0, "web-02", 1, CellState::Running),
                cell(0, "web-03", 0, CellState::Failed),
            ],
        );
        let counts = step_counts(&d);
        assert_eq!(counts[0].total, 3);
        assert_eq!(counts[0].finished, 2);
        assert_eq!(
            counts_in_words(&counts[0]),
            "3 targets: 1 running, 1 succeeded, 1 failed"
        );
        assert_eq!(counts_in_words(&counts[1]), "not reached");
    }

    #[test]
    fn the_grid_lists_only_targets_that_did_not_succeed() {
        let mut grid = Vec::new();
        let names: Vec<String> = (1..=1000).map(|i| format!("web-{i:04}")).collect();
        for name in &names {
            let state = if name == "web-0007" {
                CellState::Failed
            } else {
                CellState::Succeeded
            };
            grid.push(cell(0, name, 0, CellState::Succeeded));
            grid.push(cell(0, name, 1, CellState::Succeeded));
            grid.push(cell(1, name, 0, state));
        }
        let targets: Vec<&str> = names.iter().map(String::as_str).collect();
        let d = deployment(&targets, grid);
        let lines = grid_lines(&d);
        assert_eq!(
            lines,
            vec![
                "STEP        TARGETS",
                "Install     1000 targets: 1000 succeeded",
                "Deploy web  1000 targets: 999 succeeded, 1 failed",
                "",
                "TARGET    Install    Deploy web",
                "web-0007  succeeded  failed",
                "",
                "  web-0007  Deploy web: failed (exit code 1)",
                "",
                "999 other targets succeeded or were skipped in every step they reached (not listed)",
            ]
        );
    }

    #[test]
    fn a_grid_where_all_went_well_has_no_rows() {
        let d = deployment(
            &["web-01", "web-02"],
            vec![
                cell(0, "web-01", 0, CellState::Succeeded),
                cell(0, "web-02", 0, CellState::Skipped),
            ],
        );
        let lines = grid_lines(&d);
        assert_eq!(
            lines.last().map(String::as_str),
            Some("every target (2) succeeded or was skipped in every step it reached")
        );
        assert!(!lines.iter().any(|l| l.starts_with("TARGET")));
    }

    #[test]
    fn a_grid_before_the_first_step_says_so() {
        let lines = grid_lines(&deployment(&["web-01"], Vec::new()));
        assert_eq!(
            lines.last().map(String::as_str),
            Some("no step has started")
        );
    }

    #[test]
    fn finishing_lines_name_the_target_step_state_and_time() {
        let d = deployment(&["web-03", "db-1"], Vec::new());
        let ok = cell(1, "web-03", 0, CellState::Succeeded);
        assert_eq!(
            finished_line(&d, &ok, target_width(&d)),
            "web-03  Deploy web  succeeded  4.2s"
        );
        let failed = cell(0, "db-1", 1, CellState::Failed);
        assert_eq!(
            finished_line(&d, &failed, target_width(&d)),
            "db-1    Install / Configure  failed  4.2s: exit code 1"
        );
    }

    #[test]
    fn each_finish_is_reported_once_and_a_retry_again() {
        let mut d = deployment(
            &["web-01"],
            vec![
                cell(1, "web-01", 0, CellState::Failed),
                cell(0, "web-01", 0, CellState::Skipped),
            ],
        );
        let mut finishes = Finishes::default();
        assert_eq!(finishes.update(&d).len(), 1);
        assert!(finishes.update(&d).is_empty());
        d.grid[0].state = CellState::Succeeded;
        d.grid[0].error = None;
        d.grid[0].finished_at = Some(T0 + time::Duration::seconds(90));
        assert_eq!(
            finishes.update(&d),
            vec!["web-01  Deploy web  succeeded  1m30s"]
        );
    }

    #[test]
    fn elapsed_times_read_short() {
        assert_eq!(format_elapsed(time::Duration::milliseconds(4_299)), "4.2s");
        assert_eq!(
            format_elapsed(time::Duration::milliseconds(59_990)),
            "59.9s"
        );
        assert_eq!(format_elapsed(time::Duration::seconds(65)), "1m05s");
        assert_eq!(format_elapsed(time::Duration::seconds(7_380)), "2h03m");
        assert_eq!(format_elapsed(time::Duration::seconds(-3)), "0.0s");
    }

    #[test]
    fn the_headline_says_what_ran_how_it_ended_and_why() {
        let mut d = deployment(&["web-01"], Vec::new());
        d.summary.state = DeploymentState::Failed;
        d.summary.finished_at = Some(T0 + time::Duration::seconds(192));
        d.summary.error = Some("step Deploy web failed on web-03".to_owned());
        assert_eq!(
            headline(&d.summary),
            "deployment 12 (Web shop 2.4.0 to Production) failed in 3m12s: step Deploy web failed on web-03"
        );
        d.summary.finished_at = None;
        d.summary.started_at = None;
        d.summary.error = None;
        d.summary.state = DeploymentState::Queued;
        assert_eq!(
            headline(&d.summary),
            "deployment 12 (Web shop 2.4.0 to Production) queued"
        );
    }

    #[test]
    fn blocked_work_says_why_and_where_it_stands() {
        let reason = BlockedBy::Window {
            running: 2,
            limit: 2,
        };
        let mut blocked = Blocked {
            reasons: vec![reason],
            position: 3,
            ahead: vec![7, 8],
            summary: String::new(),
        };
        assert_eq!(
            blocked_sentence(&blocked),
            "the step's window is full (2 of 2 targets running) (position 3 in line)"
        );
        blocked.summary = "waiting for a window".to_owned();
        assert_eq!(
            blocked_sentence(&blocked),
            "waiting for a window (position 3 in line)"
        );
    }

    #[test]
    fn interventions_read_as_a_sentence_open_or_answered() {
        let d = deployment(&["web-03"], Vec::new());
        assert_eq!(
            intervention_sentence(&d, &guided(None)),
            format!(
                "intervention 5 (guided failure) on web-03 in Deploy web: exit code 1; asked at {}, open",
                capstan_api::timestamp::format(T0)
            )
        );
        let answered = guided(Some(Answered {
            answer: InterventionAnswer::Retry,
            by: Actor {
                who: "admin key".to_owned(),
                address: None,
                at: T0,
            },
            note: "disk freed".to_owned(),
        }));
        assert!(intervention_sentence(&d, &answered).ends_with(&format!(
            "; answered retry by admin key at {}: disk freed",
            capstan_api::timestamp::format(T0)
        )));
    }

    #[test]
    fn the_way_to_answer_offers_every_answer_of_the_kind() {
        assert_eq!(
            how_to_answer(12, &guided(None)),
            "answer it with `capstan deployments intervene 12 5 --retry` (or --ignore, --exclude, --fail), and `--note TEXT` to say why"
        );
        let mut manual = guided(None);
        manual.kind = InterventionKind::Manual;
        assert!(how_to_answer(12, &manual).contains("5 --proceed` (or --abort)"));
    }

    #[test]
    fn typed_answers_may_be_cut_short_when_unambiguous() {
        let guided = InterventionKind::GuidedFailure.answers();
        assert_eq!(
            parse_answer("retry", guided),
            Some(InterventionAnswer::Retry)
        );
        assert_eq!(
            parse_answer(" R\n", guided),
            Some(InterventionAnswer::Retry)
        );
        assert_eq!(
            parse_answer("ex", guided),
            Some(InterventionAnswer::Exclude)
        );
        assert_eq!(parse_answer("proceed", guided), None);
        assert_eq!(parse_answer("", guided), None);
        let two = [InterventionAnswer::Fail, InterventionAnswer::Exclude];
        assert_eq!(parse_answer("f", &two), Some(InterventionAnswer::Fail));
    }
}
