//! `capstan dashboard`: projects × environments, each cell the release deployed last
//! and how it went, in a table as wide as the terminal.

use capstan_api::{
    ApiClient,
    dashboard::{Dashboard, DashboardQuery},
};
use clap::Args;

use crate::nodes::ClientArgs;
use crate::output::outln;

#[derive(Debug, Args)]
pub struct DashboardArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Only this project (its name or id).
    #[arg(long)]
    project: Option<String>,
    /// Only this environment (its id).
    #[arg(long)]
    environment_id: Option<i64>,
    /// What is deployed on this machine (an agent id).
    #[arg(long)]
    machine: Option<i64>,
    /// The answer as JSON, one page after another (JSON Lines).
    #[arg(long)]
    json: bool,
}

/// Widest the project column gets.
const PROJECT_WIDTH: usize = 24;
/// Narrowest an environment column gets before columns are dropped.
const MIN_CELL: usize = 12;

pub async fn run(args: DashboardArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.client.server, args.client.api_key);
    let project_id = match &args.project {
        None => None,
        Some(project) => Some(client.find_project(project).await?.id),
    };
    let mut query = DashboardQuery {
        project_id,
        environment_id: args.environment_id,
        machine: args.machine,
        cursor: None,
        limit: None,
    };
    let width = terminal_width();
    let mut first = true;
    loop {
        let page = client.dashboard(&query).await?;
        if args.json {
            outln!("{}", serde_json::to_string(&page)?)?;
        } else {
            for line in render(&page, width, first) {
                outln!("{line}")?;
            }
        }
        first = false;
        match page.next {
            Some(next) => query.cursor = Some(next),
            None => break,
        }
    }
    Ok(())
}

/// `COLUMNS` if set, else the terminal's width, else 120 (output to a pipe).
fn terminal_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .or_else(|| {
            console::Term::stdout()
                .size_checked()
                .map(|(_, columns)| usize::from(columns))
        })
        .unwrap_or(120)
}

/// The table's lines: a header (when `header`) and a row per project. Environments
/// share what the project column leaves; those that would get less than
/// [`MIN_CELL`] are left out and counted in the header.
pub fn render(page: &Dashboard, width: usize, header: bool) -> Vec<String> {
    let room = width.saturating_sub(PROJECT_WIDTH + 2);
    let fit = (room / (MIN_CELL + 2)).max(1);
    let shown = page.environments.len().min(fit);
    let cell_width = room
        .checked_div(shown)
        .map_or(MIN_CELL, |each| each.saturating_sub(2).max(MIN_CELL));
    let mut lines = Vec::new();
    if header {
        let mut line = pad("PROJECT", PROJECT_WIDTH);
        for environment in &page.environments[..shown] {
            line.push_str("  ");
            line.push_str(&pad(&environment.name, cell_width));
        }
        let hidden = page.environments.len() - shown;
        if hidden > 0 {
            line.push_str(&format!(
                "  (+{hidden} environments: widen the terminal or use --environment-id)"
            ));
        }
        lines.push(line.trim_end().to_owned());
    }
    for project in &page.projects {
        let mut line = pad(&project.name, PROJECT_WIDTH);
        for environment in &page.environments[..shown] {
            let text = page
                .cells
                .iter()
                .find(|c| c.project_id == project.id && c.environment_id == environment.id)
                .map_or_else(
                    || "-".to_owned(),
                    |c| {
                        let newer = if c.newer_release { " ↑" } else { "" };
                        format!("{} {}{newer}", c.release, c.state.as_str())
                    },
                );
            line.push_str("  ");
            line.push_str(&pad(&text, cell_width));
        }
        lines.push(line.trim_end().to_owned());
    }
    lines
}

/// `text` cut with … or padded to exactly `width` characters.
fn pad(text: &str, width: usize) -> String {
    let count = text.chars().count();
    if count > width {
        let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
        cut.push('…');
        cut
    } else {
        format!("{text}{}", " ".repeat(width - count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use capstan_api::dashboard::{DashboardCell, DashboardEnvironment, DashboardProject};
    use capstan_core::deployment::DeploymentState;

    fn page(environments: usize) -> Dashboard {
        Dashboard {
            projects: vec![DashboardProject {
                id: 1,
                name: "A project with a very long name indeed".to_owned(),
                latest_release_id: Some(2),
                latest_release: Some("1.1.0".to_owned()),
            }],
            environments: (1..=environments as i64)
                .map(|id| DashboardEnvironment {
                    id,
                    name: format!("Environment {id}"),
                })
                .collect(),
            cells: vec![DashboardCell {
                project_id: 1,
                environment_id: 1,
                deployment_id: 9,
                release_id: 1,
                release: "1.0.0".to_owned(),
                state: DeploymentState::Succeeded,
                queued_at: time::OffsetDateTime::UNIX_EPOCH,
                started_at: None,
                finished_at: None,
                queued_by: None,
                newer_release: true,
            }],
            next: None,
        }
    }

    #[test]
    fn a_table_fits_the_width_and_cuts_long_names() {
        let lines = render(&page(2), 80, true);
        assert!(lines.iter().all(|l| l.chars().count() <= 80), "{lines:#?}");
        assert!(
            lines[1].starts_with("A project with a very l…"),
            "{lines:#?}"
        );
        assert!(lines[1].contains("1.0.0 succeeded ↑"), "{lines:#?}");
    }

    #[test]
    fn environments_that_do_not_fit_are_counted() {
        let lines = render(&page(20), 80, true);
        assert!(lines[0].contains("(+17 environments"), "{lines:#?}");
        assert_eq!(lines[1].matches("  -").count(), 2, "{lines:#?}");
    }
}
