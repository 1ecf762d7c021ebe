//! What one action on one target is given: the release's variables resolved for the
//! target's scope (sensitive ones by the id of their sealed value, opened only when a
//! poll hands the command over), the system variables, the output variables earlier
//! steps set on this machine, and the release's package for a package action.

use std::collections::BTreeMap;

use capstan_api::{CommandVariable, PackageRef, ScriptCommand, releases::ReleasePackage};
use capstan_core::process::{Action, Step};
use capstan_core::variables::{ScopeContext, ScopedVariable, VariableMap, evaluate_condition};
use capstan_db::projects::VariableRow;
use serde::{Deserialize, Serialize};

use crate::agents::hand_over::{
    StoredCommand, StoredScript, StoredVariable, TargetFacts, render_script, system_variables,
};

/// A machine the deployment runs on, as stored in `deployments.targets`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployTarget {
    pub agent_id: i64,
    pub name: String,
    pub tags: Vec<String>,
}

/// What every command of the deployment shares.
pub struct Release<'a> {
    pub task_id: i64,
    pub deployment_id: i64,
    pub project: &'a str,
    pub version: &'a str,
    pub environment: &'a str,
    /// The release's variables as stored, and the same opened, in the same order.
    pub rows: &'a [VariableRow],
    pub opened: &'a [ScopedVariable],
    pub packages: &'a [ReleasePackage],
}

/// Output variables by step name, then machine name, then variable name.
pub type Outputs = BTreeMap<String, BTreeMap<String, BTreeMap<String, String>>>;

/// A command ready to store, and the masked reason it cannot be run when it cannot.
pub struct Built {
    pub body: serde_json::Value,
}

impl Release<'_> {
    fn context(&self, step: &Step, target: &DeployTarget) -> ScopeContext {
        ScopeContext {
            environment: Some(self.environment.to_owned()),
            machine: Some(target.name.clone()),
            tags: target.tags.clone(),
            step: Some(step.name.clone()),
        }
    }

    fn facts(&self, target: &DeployTarget) -> TargetFacts {
        TargetFacts {
            machine: target.name.clone(),
            environment: self.environment.to_owned(),
            tags: target.tags.clone(),
        }
    }

    /// The system and output variables of an action: `Capstan.Project.Name`, ...,
    /// and `Capstan.Action[<step>].Output[<machine>].<Name>` with
    /// `Capstan.Action[<step>].Output.<Name>` for this machine's own values.
    fn extra(
        &self,
        step: &Step,
        action_name: &str,
        target: &DeployTarget,
        outputs: &Outputs,
    ) -> Vec<(String, String)> {
        let mut values = vec![
            ("Capstan.Project.Name".to_owned(), self.project.to_owned()),
            ("Capstan.Release.Number".to_owned(), self.version.to_owned()),
            (
                "Capstan.Deployment.Id".to_owned(),
                self.deployment_id.to_string(),
            ),
            ("Capstan.Step.Name".to_owned(), step.name.clone()),
            ("Capstan.Action.Name".to_owned(), action_name.to_owned()),
        ];
        for (step_name, machines) in outputs {
            if let Some(own) = machines.get(&target.name) {
                for (name, value) in own {
                    values.push((
                        format!("Capstan.Action[{step_name}].Output[{}].{name}", target.name),
                        value.clone(),
                    ));
                    values.push((
                        format!("Capstan.Action[{step_name}].Output.{name}"),
                        value.clone(),
                    ));
                }
            }
        }
        values
    }

    /// Every value a template of this action can read, opened: for run conditions and
    /// for checking a script renders before it is sent.
    fn lookup(
        &self,
        step: &Step,
        action_name: &str,
        target: &DeployTarget,
        outputs: &Outputs,
    ) -> VariableMap {
        let mut map =
            capstan_core::variables::resolve_map(self.opened, &self.context(step, target));
        for (name, value) in system_variables(self.task_id, Some(&self.facts(target))) {
            map.insert(name, value);
        }
        for (name, value) in self.extra(step, action_name, target, outputs) {
            map.insert(name, value);
        }
        map
    }

    /// Whether a `variable` run condition holds on this target. The error is masked.
    pub fn condition(
        &self,
        expression: &str,
        step: &Step,
        target: &DeployTarget,
        outputs: &Outputs,
    ) -> Result<bool, String> {
        let map = self.lookup(step, "", target, outputs);
        evaluate_condition(expression, &map).map_err(|e| e.masked(&self.masker()))
    }

    /// A masker of every sensitive value of the release.
    pub fn masker(&self) -> capstan_core::variables::Masker {
        capstan_core::variables::Masker::new(
            self.opened
                .iter()
                .filter(|v| v.sensitive)
                .map(|v| v.value.as_str()),
        )
    }

    /// The command for `action` (a script or a package) on `target`, checked to render
    /// as the hand-over will render it. The error says why it cannot run, masked.
    pub fn command(
        &self,
        step: &Step,
        index: usize,
        target: &DeployTarget,
        outputs: &Outputs,
        package: Option<PackageRef>,
    ) -> Result<Built, String> {
        let action = &step.actions[index];
        let action_name = action.display_name(index);
        let (syntax, script) = match action {
            Action::Script { syntax, body, .. } => (*syntax, body.clone()),
            Action::Package {
                syntax,
                deploy_script,
                ..
            } => (*syntax, deploy_script.clone()),
            Action::ManualIntervention { .. } => {
                return Err("a manual intervention is not run on agents".to_owned());
            }
        };
        let script = if script.trim().is_empty() {
            // A package action without a deploy script only fetches the package.
            "true".to_owned()
        } else {
            script
        };
        let context = self.context(step, target);
        let winners = capstan_core::variables::resolve(self.opened, &context);
        let mut variables = Vec::with_capacity(winners.len() + 16);
        let mut clear = Vec::with_capacity(winners.len() + 16);
        for winner in winners {
            let Some(index) = self
                .opened
                .iter()
                .position(|candidate| std::ptr::eq(candidate, winner))
            else {
                continue;
            };
            let row = &self.rows[index];
            variables.push(StoredVariable {
                name: winner.name.clone(),
                value: row.secret_id.is_none().then(|| winner.value.clone()),
                secret: row.secret_id,
                sensitive: row.secret_id.is_some(),
            });
            clear.push(CommandVariable {
                name: winner.name.clone(),
                value: winner.value.clone(),
                sensitive: winner.sensitive,
            });
        }
        for (name, value) in self.extra(step, &action_name, target, outputs) {
            clear.push(CommandVariable {
                name: name.clone(),
                value: value.clone(),
                sensitive: false,
            });
            variables.push(StoredVariable {
                name,
                value: Some(value),
                secret: None,
                sensitive: false,
            });
        }
        let packages: Vec<PackageRef> = package.into_iter().collect();
        // Rendered here only to fail now, in the log, rather than at hand-over.
        render_script(
            ScriptCommand {
                syntax,
                script: script.clone(),
                variables: clear,
                working_directory: None,
                packages: packages.clone(),
            },
            &system_variables(self.task_id, Some(&self.facts(target))),
        )?;
        let stored = StoredCommand::Script(StoredScript {
            syntax,
            script,
            variables,
            working_directory: None,
            packages,
            target: Some(self.facts(target)),
        });
        let body = serde_json::to_value(stored).map_err(|e| e.to_string())?;
        Ok(Built { body })
    }

    /// The package version the release froze for this action.
    pub fn package_of(&self, step: &Step, index: usize) -> Option<&ReleasePackage> {
        let name = step.actions[index].display_name(index);
        self.packages.iter().find(|p| {
            p.step.eq_ignore_ascii_case(&step.name) && p.action.eq_ignore_ascii_case(&name)
        })
    }
}

/// The output variables an agent reported, without Capstan's own (`_`-prefixed).
pub fn reported_outputs(outputs: &serde_json::Value) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    if let serde_json::Value::Object(map) = outputs {
        for (name, value) in map {
            if let (false, Some(value)) = (name.starts_with('_'), value.as_str()) {
                found.insert(name.clone(), value.to_owned());
            }
        }
    }
    found
}
