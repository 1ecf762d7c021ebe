//! The pieces of the deployment page, each rendered the same way for the page and for
//! the live stream: the header, the grid (its layout and each cell) and the
//! interventions panel. The stream compares what it rendered before with what it
//! renders now, so a piece is sent only when its HTML changed.

use std::collections::HashMap;

use capstan_api::deployments::{Cell, DeploymentResponse, Intervention};
use maud::{Markup, html};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::super::{caller::Viewer, page};

/// The deployment as the page shows it, piece by piece.
pub(crate) struct Rendered {
    pub header: String,
    pub interventions: String,
    /// The grid's rows and columns (targets, steps and actions): when they change, the
    /// whole table is sent again.
    pub layout: String,
    /// Each cell's element id, state word and inner HTML, in table order.
    pub cells: Vec<(String, String, String)>,
    pub finished: bool,
}

impl Rendered {
    pub(crate) fn of(
        deployment: &DeploymentResponse,
        viewer: &Viewer,
        queued_by: Option<&str>,
    ) -> Self {
        let layout = layout_key(deployment);
        Self {
            header: header(deployment, viewer, queued_by).into_string(),
            interventions: interventions(deployment, viewer).into_string(),
            cells: cells(deployment),
            layout,
            finished: deployment.summary.state.is_finished(),
        }
    }

    /// A digest of everything shown: the `id` of the stream's events. Two nodes render
    /// the same deployment alike, so a browser reconnecting to another node with this
    /// as `Last-Event-ID` is known to be up to date.
    pub(crate) fn version(&self) -> String {
        let mut digest = Sha256::new();
        for piece in [&self.header, &self.interventions, &self.layout] {
            digest.update(piece.len().to_le_bytes());
            digest.update(piece.as_bytes());
        }
        for (id, state, inner) in &self.cells {
            for piece in [id, state, inner] {
                digest.update(piece.len().to_le_bytes());
                digest.update(piece.as_bytes());
            }
        }
        digest.finalize()[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// The element id of a cell: step, action and the target's place in the list (target
/// names may hold characters an id should not).
pub(crate) fn cell_id(step: u32, action: u32, target: usize) -> String {
    format!("cell-{step}-{action}-{target}")
}

fn layout_key(deployment: &DeploymentResponse) -> String {
    let steps: Vec<String> = deployment
        .steps
        .iter()
        .map(|s| format!("{}\u{1f}{}", s.name, s.actions.join("\u{1f}")))
        .collect();
    let targets: Vec<&str> = deployment.targets.iter().map(|t| t.name.as_str()).collect();
    format!("{}\u{1e}{}", steps.join("\u{1e}"), targets.join("\u{1e}"))
}

/// Every cell of the table, reached or not, in table order.
fn cells(deployment: &DeploymentResponse) -> Vec<(String, String, String)> {
    let reached: HashMap<(u32, u32, &str), &Cell> = deployment
        .grid
        .iter()
        .map(|c| ((c.step, c.action, c.target.as_str()), c))
        .collect();
    let mut out = Vec::new();
    for (t, target) in deployment.targets.iter().enumerate() {
        for (s, step) in deployment.steps.iter().enumerate() {
            for a in 0..step.actions.len() {
                let (s, a) = (s as u32, a as u32);
                let id = cell_id(s, a, t);
                match reached.get(&(s, a, target.name.as_str())) {
                    Some(cell) => out.push((
                        id,
                        cell.state.as_str().to_owned(),
                        cell_inner(cell).into_string(),
                    )),
                    None => out.push((id, "not_reached".to_owned(), not_reached().into_string())),
                }
            }
        }
    }
    out
}

fn not_reached() -> Markup {
    html! { span.none { "not reached" } }
}

/// What a cell shows: its state in words, its times, exit code, error, and what a
/// waiting cell waits for.
pub(crate) fn cell_inner(cell: &Cell) -> Markup {
    html! {
        (page::state(cell.state.as_str()))
        @match (cell.started_at, cell.finished_at) {
            (Some(started), Some(finished)) => {
                " " small { (duration(finished - started)) }
            }
            (Some(started), None) => { " " small { "since " (clock(started)) } }
            _ => {}
        }
        @if let Some(code) = cell.exit_code {
            " " small.exit { "exit " (code) }
        }
        @if let Some(waiting) = &cell.waiting_for {
            br; small.waiting { (waiting.in_words()) }
        }
        @if let Some(error) = &cell.error {
            br; small.cell-error { (error) }
        }
    }
}

fn clock(at: OffsetDateTime) -> String {
    format!("{:02}:{:02}:{:02}", at.hour(), at.minute(), at.second())
}

fn duration(took: time::Duration) -> String {
    let ms = took.whole_milliseconds().max(0);
    if ms < 10_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else if ms < 600_000 {
        format!("{} s", ms / 1000)
    } else {
        format!("{} min {} s", ms / 60_000, (ms / 1000) % 60)
    }
}

/// The table: a row per target, a column per step's action.
pub(crate) fn grid(deployment: &DeploymentResponse, rendered: &Rendered) -> Markup {
    let mut cells = rendered.cells.iter();
    html! {
        @if deployment.targets.is_empty() {
            p.hint { "No targets yet: they are picked when the deployment starts." }
        } @else {
            table.grid {
                caption.visually-hidden { "Each target's actions, by step" }
                thead {
                    tr {
                        th scope="col" rowspan="2" { "Target" }
                        @for step in &deployment.steps {
                            th scope="colgroup" colspan=(step.actions.len().max(1)) { (step.name) }
                        }
                    }
                    tr {
                        @for step in &deployment.steps {
                            @for action in &step.actions {
                                th scope="col" { small { (action) } }
                            }
                        }
                    }
                }
                tbody {
                    @for (t, target) in deployment.targets.iter().enumerate() {
                        tr {
                            th scope="row" { (target.name) }
                            @for (s, step) in deployment.steps.iter().enumerate() {
                                @for a in 0..step.actions.len() {
                                    @if let Some((id, state, inner)) = cells.next() {
                                        td id=(id) class={ "cell cell-" (state) }
                                            data-state=(state) data-target=(target.name)
                                            data-step=(s) data-action=(a) data-row=(t) {
                                            (maud::PreEscaped(inner))
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Project, release, environment, state, times, who queued it and why it waits; the
/// cancel button while it has not finished.
pub(crate) fn header(
    deployment: &DeploymentResponse,
    viewer: &Viewer,
    queued_by: Option<&str>,
) -> Markup {
    let d = &deployment.summary;
    html! {
        dl.facts {
            div { dt { "Project" } dd { (d.project) } }
            div { dt { "Release" } dd { (d.release) } }
            div { dt { "Environment" } dd { (d.environment) } }
            div { dt { "State" } dd id="deployment-state" { (page::state(d.state.as_str())) } }
            div { dt { "Queued" } dd { (page::time(d.queued_at)) } }
            div { dt { "Started" } dd { (page::maybe_time(d.started_at)) } }
            div { dt { "Finished" } dd { (page::maybe_time(d.finished_at)) } }
            div { dt { "Queued by" } dd {
                @match (queued_by, &d.trigger) {
                    (_, Some(trigger)) => { (trigger.in_words()) }
                    (Some(who), None) => { (who) }
                    (None, None) => { span.none { "—" } }
                }
            } }
            @if let Some(rollback) = d.rollback_of {
                div { dt { "Rolls back" } dd {
                    a href={ "/deployments/" (rollback) } { "deployment " (rollback) }
                    @if d.automatic_rollback { " (automatically)" }
                } }
            }
            @if let Some(newer) = d.superseded_by {
                div { dt { "Superseded by" } dd { a href={ "/deployments/" (newer) } { "deployment " (newer) } } }
            }
        }
        @if let Some(blocked) = &deployment.blocked_by {
            p.blocked id="blocked-by" {
                strong { "Waiting: " }
                (blocked.summary)
                @if blocked.position > 0 { " (number " (blocked.position) " in line)" }
            }
        }
        @if let Some(error) = &d.error {
            p.problem id="deployment-error" { strong { "Why: " } (error) }
        }
        @if let Some(stopped) = &deployment.stopped_by {
            p.hint { "Stopped by " (stopped.who) " at " (page::time(stopped.at)) "." }
        }
        p.links {
            a href={ "/tasks/" (d.task_id) "/log" } id="task-log" { "The deployment's log (task " (d.task_id) ")" }
        }
        @if !d.state.is_finished() {
            form.inline method="post" action={ "/deployments/" (d.id) "/cancel" } id="cancel-form" {
                (page::csrf_field(viewer))
                button.danger type="submit" id="cancel-deployment" { "Cancel deployment" }
            }
        }
    }
}

/// The questions the deployment asks: the open ones with a button per answer they
/// take and a note; the answered ones with their answer.
pub(crate) fn interventions(deployment: &DeploymentResponse, viewer: &Viewer) -> Markup {
    let (open, answered): (Vec<&Intervention>, Vec<&Intervention>) = deployment
        .interventions
        .iter()
        .partition(|i| i.answer.is_none());
    let finished = deployment.summary.state.is_finished();
    let step_name = |i: &Intervention| {
        deployment
            .steps
            .get(i.step as usize)
            .map_or_else(|| format!("step {}", i.step + 1), |s| s.name.clone())
    };
    html! {
        @if !open.is_empty() || !answered.is_empty() {
            h2 id="interventions-title" { "Interventions" }
        }
        @for i in &open {
            section.intervention id={ "intervention-" (i.id) } aria-labelledby={ "intervention-" (i.id) "-title" } {
                h3 id={ "intervention-" (i.id) "-title" } {
                    (i.kind.as_str().replace('_', " ")) " in " (step_name(i))
                    @if let Some(target) = &i.target { " on " (target) }
                }
                p.question { (i.question) }
                @if let Some(role) = &i.responsible_role { p.hint { "For: " (role) } }
                p.hint { "Asked " (page::time(i.asked_at)) }
                @if finished {
                    p.hint { "The deployment has finished; it can no longer be answered." }
                } @else {
                    form method="post" action={ "/deployments/" (deployment.summary.id) "/interventions/" (i.id) } {
                        (page::csrf_field(viewer))
                        label for={ "note-" (i.id) } { "Note (optional)" }
                        input id={ "note-" (i.id) } name="note" type="text" maxlength="4096";
                        div.answers {
                            @for answer in &i.answers {
                                button type="submit" name="answer" value=(answer.as_str()) {
                                    (capitalised(answer.as_str()))
                                    span.visually-hidden { " (intervention " (i.id) ")" }
                                }
                                " "
                            }
                        }
                    }
                }
            }
        }
        @if !answered.is_empty() {
            ul.answered {
                @for i in &answered {
                    @if let Some(a) = &i.answer {
                        li id={ "intervention-" (i.id) } {
                            (i.kind.as_str().replace('_', " ")) " in " (step_name(i))
                            @if let Some(target) = &i.target { " on " (target) }
                            ": " strong { (a.answer.as_str()) } " by " (a.by.who) " at " (page::time(a.by.at))
                            @if !a.note.is_empty() { " — " q { (a.note) } }
                        }
                    }
                }
            }
        }
    }
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}
