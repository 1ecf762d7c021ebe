//! `deploy`: runs a deployment (see [`crate::deployments`]). Queued only by
//! `POST /api/deployments`, with the deployment's id as its one argument.

use std::time::Duration;

use futures::{FutureExt, future::BoxFuture};
use serde::{Deserialize, Serialize};

use super::{Prepared, Ran, TaskKind, TaskRun, parse_args};

pub const DEPLOY: &str = capstan_db::deployments::DEPLOY_KIND;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeployArgs {
    deployment_id: i64,
}

pub struct Deploy;

impl TaskKind for Deploy {
    fn name(&self) -> &'static str {
        DEPLOY
    }

    fn prepare(&self, _args: &serde_json::Value) -> Result<Prepared, String> {
        Err("deployments are queued with POST /api/deployments".to_owned())
    }

    fn cancel_grace(&self) -> Duration {
        // Time to ask the agents to stop and to close the grid.
        Duration::from_secs(10)
    }

    fn run(&self, run: TaskRun) -> BoxFuture<'static, Result<Ran, String>> {
        async move {
            let args: DeployArgs = parse_args(&run.args)?;
            crate::deployments::run(run, args.deployment_id).await
        }
        .boxed()
    }
}
