//! `capstan deploy …` and `capstan deployments …`: start a release's deployment and
//! follow it, list and show deployments, cancel or abandon them, answer their
//! interventions.

mod render;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, IsTerminal as _, Write};
use std::time::Duration;

use capstan_api::deployments::{
    AnswerRequest, CreateDeploymentRequest, DeploymentQuery, DeploymentResponse, Intervention,
    StopRequest,
};
use capstan_api::{ApiClient, ClientError, timestamp};
use capstan_core::deployment::{DeploymentState, InterventionAnswer, OfflineTargets};
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::nodes::ClientArgs;
use crate::output::outln;

/// How often `--follow` reads the deployment: grids have no event stream.
const POLL_EVERY: Duration = Duration::from_millis(500);

/// Failed reads in a row (a node restarting, the load balancer switching) that
/// `--follow` sits out, about a minute, before giving up.
const POLL_RETRIES: u32 = 120;

#[derive(Debug, Args)]
pub struct DeployArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The project's name or id.
    #[arg(long)]
    project: String,
    /// The release's version.
    #[arg(
        long,
        required_unless_present = "rollback",
        conflicts_with = "rollback"
    )]
    release: Option<String>,
    /// Redeploy the release that last succeeded on this project × environment before
    /// the current one: the newest successful deployment older than the pair's latest
    /// deployment, of another release than it.
    #[arg(long)]
    rollback: bool,
    /// The environment's name.
    #[arg(long)]
    environment: String,
    /// Only this agent (repeatable); each must be a target of the environment.
    #[arg(long = "target", value_name = "NAME")]
    targets: Vec<String>,
    /// Leave this agent out (repeatable).
    #[arg(long = "exclude-target", value_name = "NAME")]
    exclude_targets: Vec<String>,
    /// Do not run this step (repeatable).
    #[arg(long = "skip-step", value_name = "NAME")]
    skip_steps: Vec<String>,
    /// Ask an operator on every failure, whatever each step's policy says.
    #[arg(long)]
    guided_failure: bool,
    /// What a target that goes offline mid-run does: its action fails, or it is
    /// skipped from then on.
    #[arg(long, value_enum, default_value_t = Offline::Fail)]
    offline_targets: Offline,
    /// Do not start before this time: RFC 3339 (`2026-12-24T22:00:00Z`) or from now
    /// (`+30m`, `+2h`).
    #[arg(long, value_name = "TIME", value_parser = time_arg)]
    at: Option<time::OffsetDateTime>,
    /// Cancel it if it has not started by this time (RFC 3339 or `+DURATION`).
    #[arg(long, value_name = "TIME", value_parser = time_arg)]
    no_deploy_after: Option<time::OffsetDateTime>,
    /// Leave the older queued deployments of this project × environment queued
    /// instead of superseding them.
    #[arg(long)]
    keep_queued: bool,
    /// Show progress until it finishes, asking for answers on a terminal; exit 1
    /// unless it succeeded.
    #[arg(long, short)]
    follow: bool,
    /// When a freeze window holds the deployment now: queue it to start when the
    /// window closes (`wait`), or refuse it (`refuse`).
    #[arg(long, value_enum, default_value_t = IfFrozenArg::Wait)]
    if_frozen: IfFrozenArg,
    /// Start regardless of freeze windows (needs the `override_freeze` permission).
    #[arg(long)]
    override_freeze: bool,
}

/// A time given as RFC 3339, or as `+DURATION` from now.
fn time_arg(s: &str) -> Result<time::OffsetDateTime, String> {
    if let Some(after) = s.strip_prefix('+') {
        let after = capstan_core::duration::parse_duration(after).map_err(|e| e.to_string())?;
        return Ok(time::OffsetDateTime::now_utc() + after);
    }
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).map_err(|e| {
        format!("`{s}` is neither an RFC 3339 time (2026-12-24T22:00:00Z) nor `+DURATION` ({e})")
    })
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Offline {
    Fail,
    Skip,
}

impl From<Offline> for OfflineTargets {
    fn from(offline: Offline) -> Self {
        match offline {
            Offline::Fail => Self::Fail,
            Offline::Skip => Self::Skip,
        }
    }
}

#[derive(Debug, Args)]
pub struct DeploymentsArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: DeploymentsCommand,
}

#[derive(Debug, Subcommand)]
enum DeploymentsCommand {
    /// Show deployments, newest first.
    List {
        /// Only this project's (name or id).
        #[arg(long)]
        project: Option<String>,
        /// Only to this environment (name).
        #[arg(long)]
        environment: Option<String>,
        /// Only of this release.
        #[arg(long)]
        release_id: Option<i64>,
        /// Only in this state (queued, running, awaiting_intervention, succeeded,
        /// failed, cancelled, abandoned, aborted).
        #[arg(long)]
        state: Option<DeploymentState>,
        /// How many to show (1-500).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show a deployment: why it waits, its questions and its grid.
    Show {
        id: i64,
        /// Print the API's answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Cancel a queued deployment at once, or stop a running one.
    Cancel {
        id: i64,
        /// Why, for the record.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Close a cancel that could not complete (an agent never confirmed).
    Abandon {
        id: i64,
        /// Why, for the record.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Answer a deployment's question.
    Intervene {
        id: i64,
        /// The intervention's id (`deployments show` lists them).
        intervention_id: i64,
        #[command(flatten)]
        answer: AnswerFlags,
        /// Why, for the record.
        #[arg(long, default_value = "")]
        note: String,
    },
}

/// Exactly one answer.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct AnswerFlags {
    /// Run the failed action again on that target (guided failure).
    #[arg(long)]
    retry: bool,
    /// Count the target as done for this step and go on (guided failure).
    #[arg(long)]
    ignore: bool,
    /// Take the target out of this step and every later one (guided failure).
    #[arg(long)]
    exclude: bool,
    /// Fail the step (guided failure).
    #[arg(long)]
    fail: bool,
    /// Go on past a manual intervention.
    #[arg(long)]
    proceed: bool,
    /// Stop at a manual intervention: the deployment fails.
    #[arg(long)]
    abort: bool,
}

impl AnswerFlags {
    fn answer(&self) -> InterventionAnswer {
        [
            (self.retry, InterventionAnswer::Retry),
            (self.ignore, InterventionAnswer::Ignore),
            (self.exclude, InterventionAnswer::Exclude),
            (self.fail, InterventionAnswer::Fail),
            (self.proceed, InterventionAnswer::Proceed),
            (self.abort, InterventionAnswer::Abort),
        ]
        .into_iter()
        .find_map(|(given, answer)| given.then_some(answer))
        .expect("clap requires exactly one answer flag")
    }
}

/// `--if-frozen`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum IfFrozenArg {
    Wait,
    Refuse,
}

impl From<IfFrozenArg> for capstan_api::freezes::IfFrozen {
    fn from(arg: IfFrozenArg) -> Self {
        match arg {
            IfFrozenArg::Wait => Self::Wait,
            IfFrozenArg::Refuse => Self::Refuse,
        }
    }
}

pub async fn deploy(args: DeployArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.client.server, args.client.api_key);
    let project = client.find_project(&args.project).await?;
    let release_id = match &args.release {
        Some(version) => Some(client.find_release(project.id, version).await?.id),
        None => None,
    };
    let deployment = client
        .create_deployment(&CreateDeploymentRequest {
            release_id,
            project_id: Some(project.id),
            rollback: args.rollback,
            environment: args.environment,
            targets: args.targets,
            exclude_targets: args.exclude_targets,
            skip_steps: args.skip_steps,
            guided_failure: args.guided_failure,
            offline_targets: args.offline_targets.into(),
            if_frozen: args.if_frozen.into(),
            override_freeze: args.override_freeze,
            deploy_at: args.at,
            no_deploy_after: args.no_deploy_after,
            keep_queued: args.keep_queued,
        })
        .await?;
    let summary = &deployment.summary;
    outln!(
        "queued deployment {} ({}); its log: capstan tasks logs {} --follow",
        summary.id,
        render::describe(summary),
        summary.task_id
    )?;
    if let Some(at) = summary.deploy_at {
        outln!("it starts at {} at the earliest", timestamp::format(at))?;
    }
    if args.follow {
        follow(&client, summary.id).await?;
    }
    Ok(())
}

pub async fn run(args: DeploymentsArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.client.server, args.client.api_key);
    match args.command {
        DeploymentsCommand::List {
            project,
            environment,
            release_id,
            state,
            limit,
            json,
        } => {
            let project_id = match project {
                Some(project) => Some(client.find_project(&project).await?.id),
                None => None,
            };
            let query = DeploymentQuery {
                project_id,
                environment,
                release_id,
                state,
                limit: Some(limit),
                cursor: None,
            };
            let page = client.list_deployments(&query).await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&page)?)?;
                return Ok(());
            }
            outln!(
                "{:>6}  {:<24}  {:<14}  {:<16}  {:<21}  {:<27}  NOTE",
                "ID",
                "PROJECT",
                "RELEASE",
                "ENVIRONMENT",
                "STATE",
                "QUEUED"
            )?;
            for d in &page.items {
                outln!(
                    "{:>6}  {:<24}  {:<14}  {:<16}  {:<21}  {:<27}  {}",
                    d.id,
                    d.project,
                    d.release,
                    d.environment,
                    d.state,
                    timestamp::format(d.queued_at),
                    render::note(d)
                )?;
            }
            if page.next.is_some() {
                outln!("(more: raise --limit or narrow the filters)")?;
            }
        }
        DeploymentsCommand::Show { id, json } => {
            let deployment = client.deployment(id).await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&deployment)?)?;
            } else {
                print_deployment(&deployment)?;
            }
        }
        DeploymentsCommand::Cancel { id, note } => {
            let deployment = client.cancel_deployment(id, &StopRequest { note }).await?;
            if deployment.summary.state.is_finished() {
                outln!("{}", render::headline(&deployment.summary))?;
            } else {
                outln!(
                    "deployment {id} is stopping: running actions are being cancelled on their agents \
                     (`capstan deployments show {id}`; `abandon` it if an agent never confirms)"
                )?;
            }
        }
        DeploymentsCommand::Abandon { id, note } => {
            let deployment = client.abandon_deployment(id, &StopRequest { note }).await?;
            outln!("{}", render::headline(&deployment.summary))?;
        }
        DeploymentsCommand::Intervene {
            id,
            intervention_id,
            answer,
            note,
        } => {
            let answer = answer.answer();
            let deployment = client
                .answer_intervention(id, intervention_id, &AnswerRequest { answer, note })
                .await?;
            outln!(
                "answered intervention {intervention_id} of deployment {id}: {answer}; the deployment is {}",
                deployment.summary.state
            )?;
        }
    }
    Ok(())
}

fn print_deployment(deployment: &DeploymentResponse) -> anyhow::Result<()> {
    let s = &deployment.summary;
    let when =
        |at: Option<time::OffsetDateTime>| at.map(timestamp::format).unwrap_or_else(|| "-".into());
    outln!("deployment  {}", s.id)?;
    outln!("project     {} (id {})", s.project, s.project_id)?;
    outln!("release     {} (id {})", s.release, s.release_id)?;
    outln!("environment {}", s.environment)?;
    outln!("state       {}", s.state)?;
    if let Some(trigger) = &s.trigger {
        outln!("trigger     {}", trigger.in_words())?;
    }
    if let Some(error) = &s.error {
        outln!("error       {error}")?;
    }
    if let Some(blocked) = deployment
        .blocked_by
        .as_ref()
        .filter(|_| s.state == DeploymentState::Queued)
    {
        outln!("waiting     {}", render::blocked_sentence(blocked))?;
    }
    if let Some(actor) = &deployment.stopped_by {
        outln!(
            "stopped by  {}{} at {}",
            actor.who,
            actor
                .address
                .as_deref()
                .map(|a| format!(" ({a})"))
                .unwrap_or_default(),
            timestamp::format(actor.at)
        )?;
    }
    outln!(
        "task        {} (log: capstan tasks logs {})",
        s.task_id,
        s.task_id
    )?;
    outln!("queued      {}", timestamp::format(s.queued_at))?;
    outln!("started     {}", when(s.started_at))?;
    outln!("finished    {}", when(s.finished_at))?;
    let options = &deployment.options;
    for (label, values) in [
        ("targets", &options.targets),
        ("excluded", &options.exclude_targets),
        ("skipped", &options.skip_steps),
    ] {
        if !values.is_empty() {
            outln!("{label:<11} {}", values.join(", "))?;
        }
    }
    if options.guided_failure {
        outln!("guided failure on every step")?;
    }
    if options.offline_targets == OfflineTargets::Skip {
        outln!("offline targets are skipped")?;
    }
    if !deployment.interventions.is_empty() {
        outln!()?;
        for intervention in &deployment.interventions {
            outln!(
                "{}",
                render::intervention_sentence(deployment, intervention)
            )?;
            if intervention.answer.is_none() {
                outln!("  {}", render::how_to_answer(s.id, intervention))?;
            }
        }
    }
    outln!()?;
    for line in render::grid_lines(deployment) {
        outln!("{line}")?;
    }
    Ok(())
}

/// Polls a deployment until it finishes: a line per action that finishes, a bar per
/// step, questions answered at the terminal (or how to answer them elsewhere), and the
/// grid at the end. Fails unless the deployment succeeded.
async fn follow(client: &ApiClient, id: i64) -> anyhow::Result<()> {
    let bars = MultiProgress::new();
    let status = bars.add(ProgressBar::new_spinner().with_style(
        ProgressStyle::with_template("{spinner} {elapsed} {msg}").expect("a valid template"),
    ));
    let mut step_bars: HashMap<usize, ProgressBar> = HashMap::new();
    let mut finishes = render::Finishes::default();
    let mut handled: HashSet<i64> = HashSet::new();
    let interactive = std::io::stdin().is_terminal();
    let mut failures = 0;
    let deployment = loop {
        let deployment = match client.deployment(id).await {
            Ok(deployment) => {
                failures = 0;
                deployment
            }
            Err(ClientError::Api(problem)) if problem.status < 500 => {
                return Err(ClientError::Api(problem).into());
            }
            Err(e) => {
                failures += 1;
                if failures > POLL_RETRIES {
                    return Err(e.into());
                }
                status.set_message(format!("cannot read deployment {id} ({e}); retrying"));
                tokio::time::sleep(POLL_EVERY).await;
                continue;
            }
        };
        let lines = finishes.update(&deployment);
        bars.suspend(|| lines.iter().try_for_each(|line| outln!("{line}")))?;
        update_bars(&bars, &mut step_bars, &deployment);
        status.set_message(status_message(&deployment));
        status.tick();
        if deployment.summary.state.is_finished() {
            break deployment;
        }
        for intervention in &deployment.interventions {
            if intervention.answer.is_some() || !handled.insert(intervention.id) {
                continue;
            }
            let sentence = render::intervention_sentence(&deployment, intervention);
            if !interactive {
                let how = render::how_to_answer(id, intervention);
                bars.suspend(|| outln!("{sentence}\n  {how}"))?;
                continue;
            }
            let asked = tokio::task::block_in_place(|| {
                bars.suspend(|| {
                    let mut err = std::io::stderr().lock();
                    ask(
                        &mut std::io::stdin().lock(),
                        &mut err,
                        &sentence,
                        intervention,
                    )
                })
            })?;
            let Some(request) = asked else {
                let how = render::how_to_answer(id, intervention);
                bars.suspend(|| outln!("{how}"))?;
                continue;
            };
            match client
                .answer_intervention(id, intervention.id, &request)
                .await
            {
                Ok(_) => {
                    let answer = request.answer;
                    bars.suspend(|| outln!("answered intervention {}: {answer}", intervention.id))?;
                }
                // Someone answered first (409), or the answer was refused: say so, and
                // ask again if the question is still open at the next look.
                Err(ClientError::Api(problem)) if problem.status < 500 => {
                    bars.suspend(|| eprintln!("capstan: {problem}"));
                    handled.remove(&intervention.id);
                }
                Err(e) => return Err(e.into()),
            }
        }
        tokio::time::sleep(POLL_EVERY).await;
    };
    status.finish_and_clear();
    for bar in step_bars.values() {
        bar.finish_and_clear();
    }
    outln!()?;
    for line in render::grid_lines(&deployment) {
        outln!("{line}")?;
    }
    let headline = render::headline(&deployment.summary);
    if deployment.summary.state != DeploymentState::Succeeded {
        anyhow::bail!("{headline}");
    }
    outln!("{headline}")?;
    Ok(())
}

/// What the spinner says: the state, and why a queued deployment waits.
fn status_message(deployment: &DeploymentResponse) -> String {
    let s = &deployment.summary;
    match (&deployment.blocked_by, s.state) {
        (Some(blocked), DeploymentState::Queued) => format!(
            "deployment {} queued: {}",
            s.id,
            render::blocked_sentence(blocked)
        ),
        (_, DeploymentState::AwaitingIntervention) => {
            format!("deployment {} awaits an operator's answer", s.id)
        }
        _ => format!("deployment {} {}", s.id, s.state),
    }
}

/// A bar per step the deployment has reached: its targets done of its targets.
fn update_bars(
    bars: &MultiProgress,
    step_bars: &mut HashMap<usize, ProgressBar>,
    deployment: &DeploymentResponse,
) {
    let width = deployment
        .steps
        .iter()
        .map(|s| s.name.chars().count())
        .max()
        .unwrap_or(0)
        .min(32);
    for (index, counts) in render::step_counts(deployment).iter().enumerate() {
        if counts.total == 0 {
            continue;
        }
        let bar = step_bars.entry(index).or_insert_with(|| {
            let template = format!("{{prefix:<{width}}} [{{bar:30}}] {{pos}}/{{len}} {{msg}}");
            let bar = ProgressBar::new(counts.total as u64)
                .with_style(
                    ProgressStyle::with_template(&template)
                        .expect("a valid template")
                        .progress_chars("=> "),
                )
                .with_prefix(counts.name.clone());
            bars.add(bar)
        });
        bar.set_length(counts.total as u64);
        bar.set_position(counts.finished as u64);
        bar.set_message(render::counts_in_words(counts));
    }
}

/// Asks for an answer and a note at the terminal; `None` if input ends first.
fn ask(
    input: &mut impl BufRead,
    output: &mut impl Write,
    sentence: &str,
    intervention: &Intervention,
) -> anyhow::Result<Option<AnswerRequest>> {
    let allowed = render::answers_of(intervention);
    let names: Vec<&str> = allowed.iter().map(|a| a.as_str()).collect();
    writeln!(output, "{sentence}")?;
    let answer = loop {
        write!(output, "answer ({}): ", names.join(", "))?;
        output.flush()?;
        let mut line = String::new();
        if input.read_line(&mut line)? == 0 {
            writeln!(output)?;
            return Ok(None);
        }
        match render::parse_answer(&line, &allowed) {
            Some(answer) => break answer,
            None => writeln!(
                output,
                "`{}` is not one of: {}",
                line.trim(),
                names.join(", ")
            )?,
        }
    };
    write!(output, "note (optional): ")?;
    output.flush()?;
    let mut note = String::new();
    input.read_line(&mut note)?;
    Ok(Some(AnswerRequest {
        answer,
        note: note.trim().to_owned(),
    }))
}

#[cfg(test)]
mod tests {
    use capstan_core::deployment::InterventionKind;

    use super::*;

    fn manual() -> Intervention {
        Intervention {
            id: 9,
            kind: InterventionKind::Manual,
            step: 0,
            target: None,
            action: None,
            question: "check the dashboards".to_owned(),
            answers: Vec::new(),
            responsible_role: None,
            asked_at: time::OffsetDateTime::UNIX_EPOCH,
            answer: None,
        }
    }

    #[test]
    fn the_prompt_asks_again_until_the_answer_is_one_the_question_takes() {
        let mut input = std::io::Cursor::new("retry\npro\nall green\n");
        let mut output = Vec::new();
        let request = ask(&mut input, &mut output, "question", &manual()).unwrap();
        assert_eq!(
            request,
            Some(AnswerRequest {
                answer: InterventionAnswer::Proceed,
                note: "all green".to_owned(),
            })
        );
        let output = String::from_utf8(output).unwrap();
        assert!(output.contains("answer (proceed, abort): "));
        assert!(output.contains("`retry` is not one of: proceed, abort"));
    }

    #[test]
    fn the_prompt_gives_up_quietly_when_input_ends() {
        let mut input = std::io::Cursor::new("");
        let mut output = Vec::new();
        assert_eq!(
            ask(&mut input, &mut output, "question", &manual()).unwrap(),
            None
        );
    }
}
