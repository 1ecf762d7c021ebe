//! `capstan tasks ...`: list, show, queue, cancel and reorder tasks, say why one has not
//! started, and read their logs.

use std::time::Duration;

use anyhow::Context as _;
use capstan_api::{ApiClient, CreateTaskRequest, LogEvent, TaskQuery, TaskResponse, timestamp};
use capstan_core::{ConcurrencyKey, TaskState};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use crate::nodes::ClientArgs;
use crate::output::{self, outln};

#[derive(Debug, Args)]
pub struct TasksArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: TasksCommand,
}

#[derive(Debug, Subcommand)]
enum TasksCommand {
    /// Show tasks, newest first.
    List {
        /// Only tasks in this state (queued, running, succeeded, failed, cancelled).
        #[arg(long)]
        state: Option<TaskState>,
        /// Only tasks of this kind.
        #[arg(long)]
        kind: Option<String>,
        /// Only tasks on this node (name or id).
        #[arg(long)]
        node: Option<String>,
        /// How many to show (1-500).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one task and every attempt of it.
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Queue a task, e.g. `capstan tasks create sleep --args '{"ms": 1000}'`.
    Create {
        kind: String,
        /// The kind's arguments as a JSON object.
        #[arg(long, default_value = "{}")]
        args: String,
        /// Run one at a time with other tasks of this key.
        #[arg(long)]
        concurrency_key: Option<String>,
        /// Wait until it finishes, showing its state; exit 1 unless it succeeded.
        #[arg(long)]
        wait: bool,
    },
    /// Cancel a queued task at once, or ask the node running it to stop it.
    Cancel { id: i64 },
    /// Put a queued task ahead of every other queued task.
    MoveToFront { id: i64 },
    /// Say in one sentence why a task has not started, or where it stands if it has.
    Why { id: i64 },
    /// Print a task's log: `<time> <LEVEL> <text>` per line.
    Logs {
        id: i64,
        /// Keep printing lines as they are written until the task finishes; exit 1
        /// unless it succeeded.
        #[arg(long, short)]
        follow: bool,
    },
}

pub async fn run(args: TasksArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.client.server, args.client.api_key);
    match args.command {
        TasksCommand::List {
            state,
            kind,
            node,
            limit,
            json,
        } => {
            let query = TaskQuery {
                state,
                kind,
                node,
                limit: Some(limit),
                cursor: None,
            };
            let page = client.list_tasks(&query).await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&page)?)?;
            } else {
                print_table(&page.items)?;
                if page.next.is_some() {
                    outln!("(more: raise --limit or narrow the filters)")?;
                }
            }
        }
        TasksCommand::Show { id, json } => {
            let task = client.get_task(id).await?;
            let attempts = client.task_attempts(id).await?;
            if json {
                let both = serde_json::json!({ "task": task, "attempts": attempts.items });
                outln!("{}", serde_json::to_string_pretty(&both)?)?;
            } else {
                print_task(&task)?;
                if !attempts.items.is_empty() {
                    outln!(
                        "\n{:<8} {:<20} {:<28} {:<28} OUTCOME",
                        "ATTEMPT",
                        "NODE",
                        "STARTED",
                        "FINISHED"
                    )?;
                    for a in &attempts.items {
                        outln!(
                            "{:<8} {:<20} {:<28} {:<28} {}",
                            a.attempt,
                            a.node_name,
                            timestamp::format(a.started_at),
                            a.finished_at
                                .map(timestamp::format)
                                .unwrap_or_else(|| "-".into()),
                            a.outcome.as_deref().unwrap_or("running")
                        )?;
                    }
                }
            }
        }
        TasksCommand::Create {
            kind,
            args,
            concurrency_key,
            wait,
        } => {
            let args: serde_json::Value =
                serde_json::from_str(&args).context("--args is not valid JSON")?;
            let mut request = CreateTaskRequest::new(&kind, args);
            request.concurrency_key = concurrency_key
                .map(ConcurrencyKey::parse)
                .transpose()
                .map_err(anyhow::Error::msg)?;
            let task = client.create_task(&request).await?;
            outln!("queued task {} ({})", task.id, task.kind)?;
            if wait {
                let task = wait_for(&client, task.id).await?;
                print_task(&task)?;
                if task.state != TaskState::Succeeded {
                    anyhow::bail!("task {} {}", task.id, task.state);
                }
            }
        }
        TasksCommand::Why { id } => {
            let task = client.get_task(id).await?;
            outln!("{}", why(&task))?;
        }
        TasksCommand::Logs { id, follow } => {
            if follow {
                follow_log(&client, id).await?;
            } else {
                print_log(&client, id).await?;
            }
        }
        TasksCommand::MoveToFront { id } => {
            let task = client.move_task_to_front(id).await?;
            outln!("task {id} moved to the front of the queue")?;
            if let Some(blocked) = &task.blocked_by
                && !blocked.reasons.is_empty()
            {
                outln!("it still waits: {}", blocked.summary)?;
            }
        }
        TasksCommand::Cancel { id } => {
            let task = client.cancel_task(id).await?;
            if task.state == TaskState::Cancelled {
                outln!("task {id} cancelled")?;
            } else {
                outln!(
                    "task {id} is running on {}; its node is stopping it",
                    task.node_name.as_deref().unwrap_or("a node")
                )?;
            }
        }
    }
    Ok(())
}

/// Copies a task's log to stdout as it arrives.
async fn print_log(client: &ApiClient, id: i64) -> anyhow::Result<()> {
    let mut chunks = client.task_log(id).await?;
    while let Some(chunk) = chunks.next().await? {
        output::write_all_and_flush(&chunk)?;
    }
    Ok(())
}

/// Prints a task's log line by line until the task finishes; fails unless it
/// succeeded.
pub(crate) async fn follow_log(client: &ApiClient, id: i64) -> anyhow::Result<()> {
    let mut follower = client.follow_task_log(id);
    while let Some(event) = follower.next().await? {
        match event {
            LogEvent::Line { text, .. } => {
                output::write_all_and_flush(format!("{text}\n").as_bytes())?;
            }
            LogEvent::End(end) => {
                if end.state != TaskState::Succeeded {
                    match end.error {
                        Some(error) => anyhow::bail!("task {id} {}: {error}", end.state),
                        None => anyhow::bail!("task {id} {}", end.state),
                    }
                }
            }
        }
    }
    Ok(())
}

/// Polls a task until it finishes, with a spinner that shows its state.
pub(crate) async fn wait_for(client: &ApiClient, id: i64) -> anyhow::Result<TaskResponse> {
    let spinner = ProgressBar::new_spinner().with_style(
        ProgressStyle::with_template("{spinner} {elapsed} {msg}").expect("a valid template"),
    );
    loop {
        let task = client.get_task(id).await?;
        spinner.set_message(format!(
            "task {id} {}{}",
            task.state,
            task.node_name
                .as_deref()
                .map(|n| format!(" on {n}"))
                .unwrap_or_default()
        ));
        spinner.tick();
        if task.state.is_finished() {
            spinner.finish_and_clear();
            return Ok(task);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// One sentence: where the task stands and, while queued, why it has not started.
fn why(task: &TaskResponse) -> String {
    let id = task.id;
    match (task.state, &task.blocked_by) {
        (TaskState::Queued, Some(blocked)) => {
            let mut sentence = format!("task {id} is {} in line", ordinal(blocked.position));
            if !blocked.ahead.is_empty() {
                let ids: Vec<String> = blocked.ahead.iter().map(i64::to_string).collect();
                sentence.push_str(&format!(" behind {}", ids.join(", ")));
                let more = (blocked.position as usize)
                    .saturating_sub(1)
                    .saturating_sub(blocked.ahead.len());
                if more > 0 {
                    sentence.push_str(&format!(" and {more} more"));
                }
            }
            format!("{sentence}: {}", blocked.summary)
        }
        (TaskState::Queued, None) => format!("task {id} is queued and being claimed now"),
        (TaskState::Running, _) => format!(
            "task {id} is running on {} since {}{}",
            task.node_name.as_deref().unwrap_or("a node"),
            task.started_at
                .map(timestamp::format)
                .unwrap_or_else(|| "-".into()),
            if task.cancel_requested {
                " (cancel requested)"
            } else {
                ""
            }
        ),
        (state, _) => match &task.error {
            Some(error) => format!("task {id} finished: {state} ({error})"),
            None => format!("task {id} finished: {state}"),
        },
    }
}

/// 1st, 2nd, 3rd, 4th, ..., 11th, 12th, 13th, ..., 21st.
fn ordinal(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

fn print_task(task: &TaskResponse) -> anyhow::Result<()> {
    let when =
        |at: Option<time::OffsetDateTime>| at.map(timestamp::format).unwrap_or_else(|| "-".into());
    outln!("task      {}", task.id)?;
    outln!("kind      {}", task.kind)?;
    outln!("args      {}", task.args)?;
    outln!(
        "state     {}{}",
        task.state,
        if task.cancel_requested {
            " (cancel requested)"
        } else {
            ""
        }
    )?;
    outln!("node      {}", task.node_name.as_deref().unwrap_or("-"))?;
    outln!("attempt   {}", task.attempt)?;
    outln!("on lost   {}", task.on_node_lost)?;
    if let Some(key) = &task.concurrency_key {
        outln!("key       {}", key.as_str())?;
    }
    outln!("queued    {}", timestamp::format(task.queued_at))?;
    outln!("started   {}", when(task.started_at))?;
    outln!("finished  {}", when(task.finished_at))?;
    if let Some(error) = &task.error {
        outln!("error     {error}")?;
    }
    Ok(())
}

fn print_table(tasks: &[TaskResponse]) -> anyhow::Result<()> {
    outln!(
        "{:<10} {:<24} {:<10} {:<16} {:<8} {:<28} ERROR",
        "ID",
        "KIND",
        "STATE",
        "NODE",
        "ATTEMPT",
        "QUEUED"
    )?;
    for t in tasks {
        outln!(
            "{:<10} {:<24} {:<10} {:<16} {:<8} {:<28} {}",
            t.id,
            t.kind,
            t.state.as_str(),
            t.node_name.as_deref().unwrap_or("-"),
            t.attempt,
            timestamp::format(t.queued_at),
            t.error.as_deref().unwrap_or("")
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::ordinal;

    #[test]
    fn ordinals_are_english() {
        let words: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111, 112]
            .into_iter()
            .map(ordinal)
            .collect();
        assert_eq!(
            words,
            [
                "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st",
                "111th", "112th"
            ]
        );
    }
}
