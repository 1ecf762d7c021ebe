//! Checks a process needs no database for. Every issue names the field at fault and the
//! step it belongs to, so an editor with forty steps finds it at once.

use std::collections::HashMap;

use super::{
    Action, FailurePolicy, MAX_ACTIONS, MAX_SCRIPT_BYTES, MAX_STEPS, MaxFailedTargets,
    RunCondition, StartTrigger, Step, VersionRule,
};
use crate::agent::normalize_tags;
use crate::deployment::FailureBudget;
use crate::package::{PackageId, PackageVersion};
use crate::variables::Template;

/// Longest step, action or lock name.
const MAX_NAME: usize = 200;
/// Largest window or parallelism a step may ask for.
const MAX_PARALLEL: u32 = 100_000;

/// One thing wrong with a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessIssue {
    /// A path into the request: `steps[2].actions[0].body`.
    pub field: String,
    pub detail: String,
}

impl std::fmt::Display for ProcessIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.detail)
    }
}

/// Every issue of the process, in step order; empty when it is valid.
pub fn validate(steps: &[Step]) -> Vec<ProcessIssue> {
    let mut issues = Vec::new();
    if steps.len() > MAX_STEPS {
        issues.push(ProcessIssue {
            field: "steps".to_owned(),
            detail: format!(
                "a process has at most {MAX_STEPS} steps, this one has {}",
                steps.len()
            ),
        });
        return issues;
    }
    let positions = step_positions(steps);
    let groups = parallel_groups(steps);
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, step) in steps.iter().enumerate() {
        let mut check = StepCheck {
            index: i,
            step,
            issues: &mut issues,
        };
        check.name(&mut seen);
        check.tags();
        if i == 0 && step.start_trigger == StartTrigger::WithPrevious {
            check.issue(
                "start_trigger",
                "the first step cannot start with the previous one: there is none".to_owned(),
            );
        }
        if let RunCondition::Variable { expression } = &step.run_condition {
            check.template("run_condition.expression", expression, &positions, &groups);
        }
        for (field, value) in [
            ("window_size", step.window_size),
            ("max_parallelism", step.max_parallelism),
        ] {
            if let Some(n) = value.filter(|n| !(1..=MAX_PARALLEL).contains(n)) {
                check.issue(field, format!("must be 1 to {MAX_PARALLEL}, not {n}"));
            }
        }
        if let FailurePolicy::Continue {
            max_failed_targets: MaxFailedTargets(FailureBudget::Count(0)),
        } = step.failure_policy
        {
            check.issue(
                "failure_policy.max_failed_targets",
                "must be at least 1 (use mode `fail` to stop at the first failure)".to_owned(),
            );
        }
        if let Err(why) = step.action_timeout() {
            check.issue("timeout", why);
        }
        if let Some(lock) = &step.lock
            && let Err(why) = check_name(&lock.name)
        {
            check.issue("lock.name", why);
        }
        check.actions(&positions, &groups);
    }
    issues
}

/// Steps by lower-cased name (the first of each name).
fn step_positions(steps: &[Step]) -> HashMap<String, usize> {
    let mut positions = HashMap::new();
    for (i, step) in steps.iter().enumerate() {
        positions.entry(step.name.to_lowercase()).or_insert(i);
    }
    positions
}

/// For each step, the first step of the group it runs in parallel with.
fn parallel_groups(steps: &[Step]) -> Vec<usize> {
    let mut groups = Vec::with_capacity(steps.len());
    for (i, step) in steps.iter().enumerate() {
        let group = match (step.start_trigger, groups.last()) {
            (StartTrigger::WithPrevious, Some(&previous)) => previous,
            _ => i,
        };
        groups.push(group);
    }
    groups
}

fn check_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("cannot be empty".to_owned());
    }
    crate::names::normalize(name).map_err(|e| e.to_string())?;
    if name.trim() != name {
        return Err(format!("`{name}` starts or ends with spaces"));
    }
    if name.chars().count() > MAX_NAME {
        return Err(format!("has at most {MAX_NAME} characters"));
    }
    if name.chars().any(|c| c.is_control() || c == '[' || c == ']') {
        return Err(format!(
            "`{}` holds a control character or a bracket",
            name.escape_debug()
        ));
    }
    Ok(())
}

struct StepCheck<'a> {
    index: usize,
    step: &'a Step,
    issues: &'a mut Vec<ProcessIssue>,
}

impl StepCheck<'_> {
    fn issue(&mut self, field: &str, detail: String) {
        let name = if self.step.name.is_empty() {
            String::new()
        } else {
            format!(" (\"{}\")", self.step.name)
        };
        self.issues.push(ProcessIssue {
            field: format!("steps[{}].{field}", self.index),
            detail: format!("step {}{name}: {detail}", self.index + 1),
        });
    }

    fn name(&mut self, seen: &mut HashMap<String, usize>) {
        if let Err(why) = check_name(&self.step.name) {
            self.issue("name", format!("the name {why}"));
        }
        if let Some(first) = seen.insert(self.step.name.to_lowercase(), self.index) {
            self.issue(
                "name",
                format!(
                    "the name is already used by step {} (names are unique in any case)",
                    first + 1
                ),
            );
        }
    }

    fn tags(&mut self) {
        if self.step.target_tags.is_empty() {
            self.issue(
                "target_tags",
                "name at least one tag: the step runs on targets carrying any of them".to_owned(),
            );
        } else if let Err(why) = normalize_tags(&self.step.target_tags) {
            self.issue("target_tags", why);
        }
    }

    /// Parses a template and checks its output variables come from steps that have
    /// finished when this one starts: a reference to itself, a step beside it or a
    /// later step would wait on itself.
    fn template(
        &mut self,
        field: &str,
        text: &str,
        positions: &HashMap<String, usize>,
        groups: &[usize],
    ) {
        if text.len() > MAX_SCRIPT_BYTES {
            self.issue(
                field,
                format!("is longer than {} KiB", MAX_SCRIPT_BYTES / 1024),
            );
            return;
        }
        let template = match Template::parse(text) {
            Ok(template) => template,
            Err(e) => {
                self.issue(field, e.to_string());
                return;
            }
        };
        for reference in template.references() {
            let Some(step) = output_step(&reference) else {
                continue;
            };
            match positions.get(&step.to_lowercase()) {
                None => self.issue(
                    field,
                    format!("`{reference}` names a step `{step}` that the process does not have"),
                ),
                Some(&other) if groups[other] >= groups[self.index] => self.issue(
                    field,
                    format!(
                        "`{reference}` reads an output of step {} (\"{step}\"), which has not \
                         finished when this step starts: a cycle",
                        other + 1
                    ),
                ),
                Some(_) => {}
            }
        }
    }

    fn actions(&mut self, positions: &HashMap<String, usize>, groups: &[usize]) {
        let actions = &self.step.actions;
        if actions.is_empty() || actions.len() > MAX_ACTIONS {
            self.issue(
                "actions",
                format!(
                    "a step has 1 to {MAX_ACTIONS} actions, this one has {}",
                    actions.len()
                ),
            );
            return;
        }
        let mut names: HashMap<String, usize> = HashMap::new();
        for (a, action) in actions.iter().enumerate() {
            let at = |field: &str| format!("actions[{a}].{field}");
            if let Some(name) = action.name() {
                if let Err(why) = check_name(name) {
                    self.issue(&at("name"), format!("the name {why}"));
                }
                if let Some(first) = names.insert(name.to_lowercase(), a) {
                    self.issue(
                        &at("name"),
                        format!(
                            "action `{name}` is already the name of action {}",
                            first + 1
                        ),
                    );
                }
            }
            match action {
                Action::ManualIntervention {
                    instructions,
                    responsible_role,
                    ..
                } => {
                    if instructions.trim().is_empty() {
                        self.issue(
                            &at("instructions"),
                            "say what the operator should do".to_owned(),
                        );
                    }
                    if instructions.len() > 16 * 1024 {
                        self.issue(&at("instructions"), "at most 16 KiB".to_owned());
                    }
                    if let Some(Err(why)) = responsible_role.as_deref().map(check_name) {
                        self.issue(&at("responsible_role"), why);
                    }
                }
                Action::Script { body, .. } => {
                    if body.trim().is_empty() {
                        self.issue(&at("body"), "the script is empty".to_owned());
                    }
                    self.template(&at("body"), body, positions, groups);
                }
                Action::Package {
                    package_id,
                    version,
                    version_rule,
                    deploy_script,
                    acquisition_parallelism,
                    ..
                } => {
                    if let Err(why) = PackageId::parse(package_id) {
                        self.issue(&at("package_id"), why);
                    }
                    if version.is_some() && version_rule.is_some() {
                        self.issue(
                            &at("version"),
                            "give a version or a version_rule, not both".to_owned(),
                        );
                    }
                    if let Some(Err(why)) = version.as_deref().map(PackageVersion::parse) {
                        self.issue(&at("version"), why);
                    }
                    if let Some(Err(why)) = version_rule.as_deref().map(VersionRule::parse) {
                        self.issue(&at("version_rule"), why.to_string());
                    }
                    self.template(&at("deploy_script"), deploy_script, positions, groups);
                    if let Some(n) = acquisition_parallelism.filter(|n| !(1..=1000).contains(n)) {
                        self.issue(
                            &at("acquisition_parallelism"),
                            format!("must be 1 to 1000, not {n}"),
                        );
                    }
                }
            }
        }
    }
}

/// The step an output variable reads: `Capstan.Action[Deploy].Output...` is `Deploy`.
/// Indexes computed by a nested `#{}` are known only at run time.
fn output_step(reference: &str) -> Option<&str> {
    const PREFIX: &str = "capstan.action[";
    let head = reference.get(..PREFIX.len())?;
    if !head.eq_ignore_ascii_case(PREFIX) {
        return None;
    }
    let rest = &reference[PREFIX.len()..];
    let (step, after) = rest.split_once(']')?;
    let is_output = after
        .get(..7)
        .is_some_and(|s| s.eq_ignore_ascii_case(".output"));
    (is_output && step != "*").then_some(step)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::{LockScope, NamedLock};
    use crate::script::ScriptSyntax;

    fn script(body: &str) -> Action {
        Action::Script {
            name: None,
            syntax: ScriptSyntax::Bash,
            body: body.to_owned(),
        }
    }

    fn step(name: &str) -> Step {
        Step {
            name: name.to_owned(),
            target_tags: vec!["web".to_owned()],
            start_trigger: StartTrigger::AfterPrevious,
            run_condition: RunCondition::Success,
            window_size: None,
            max_parallelism: None,
            failure_policy: FailurePolicy::Fail,
            bypass_machine_mutex: false,
            lock: None,
            timeout: None,
            actions: vec![script("echo hi")],
        }
    }

    fn fields(steps: &[Step]) -> Vec<String> {
        validate(steps).into_iter().map(|i| i.field).collect()
    }

    #[test]
    fn a_sound_process_has_no_issues() {
        let mut second = step("Deploy");
        second.window_size = Some(2);
        second.lock = Some(NamedLock {
            name: "db".to_owned(),
            scope: LockScope::Environment,
        });
        second.run_condition = RunCondition::Variable {
            expression: "#{if Capstan.Action[Check].Output.Ready}true#{/if}".to_owned(),
        };
        assert_eq!(validate(&[step("Check"), second]), vec![]);
    }

    #[test]
    fn duplicate_names_are_named_with_both_steps() {
        let issues = validate(&[step("Deploy"), step("deploy")]);
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].field, "steps[1].name");
        assert!(
            issues[0].detail.contains("step 2 (\"deploy\")"),
            "{}",
            issues[0]
        );
        assert!(issues[0].detail.contains("used by step 1"), "{}", issues[0]);
    }

    #[test]
    fn conditions_on_itself_a_parallel_or_a_later_step_are_cycles() {
        let reading = |from: &str| RunCondition::Variable {
            expression: format!("#{{if Capstan.Action[{from}].Output[web01].Ok}}x#{{/if}}"),
        };
        let mut a = step("A");
        a.run_condition = reading("B");
        let mut b = step("B");
        b.run_condition = reading("B");
        let mut c = step("C");
        c.start_trigger = StartTrigger::WithPrevious;
        c.run_condition = reading("B");
        let issues = validate(&[a, b, c]);
        assert_eq!(issues.len(), 3, "{issues:?}");
        assert!(
            issues.iter().all(|i| i.detail.contains("a cycle")),
            "{issues:?}"
        );

        let mut later = step("D");
        later.run_condition = reading("Nope");
        let issues = validate(&[step("A"), later]);
        assert!(issues[0].detail.contains("does not have"), "{issues:?}");
    }

    #[test]
    fn scripts_reading_later_outputs_are_cycles_too() {
        let mut a = step("A");
        a.actions = vec![script("echo #{Capstan.Action[B].Output.Url}")];
        assert_eq!(fields(&[a, step("B")]), ["steps[0].actions[0].body"]);
    }

    #[test]
    fn every_field_is_checked() {
        let mut s = step("");
        s.target_tags = vec![];
        s.start_trigger = StartTrigger::WithPrevious;
        s.window_size = Some(0);
        s.max_parallelism = Some(0);
        s.failure_policy = FailurePolicy::Continue {
            max_failed_targets: MaxFailedTargets(FailureBudget::Count(0)),
        };
        s.lock = Some(NamedLock {
            name: " ".to_owned(),
            scope: LockScope::Machine,
        });
        s.actions = vec![
            script("#{unclosed"),
            Action::Package {
                name: None,
                package_id: "bad id!".to_owned(),
                version: Some("x".to_owned()),
                version_rule: Some(">=1".to_owned()),
                syntax: ScriptSyntax::Bash,
                deploy_script: String::new(),
                acquisition_parallelism: Some(0),
            },
        ];
        assert_eq!(
            fields(&[s]),
            [
                "steps[0].name",
                "steps[0].target_tags",
                "steps[0].start_trigger",
                "steps[0].window_size",
                "steps[0].max_parallelism",
                "steps[0].failure_policy.max_failed_targets",
                "steps[0].lock.name",
                "steps[0].actions[0].body",
                "steps[0].actions[1].package_id",
                "steps[0].actions[1].version",
                "steps[0].actions[1].version",
                "steps[0].actions[1].acquisition_parallelism",
            ]
        );
    }

    #[test]
    fn template_errors_carry_line_and_column() {
        let mut s = step("A");
        s.actions = vec![script("echo ok\necho #{if}")];
        let issues = validate(&[s]);
        assert!(issues[0].detail.contains("line 2"), "{issues:?}");
    }

    #[test]
    fn output_steps_are_found_in_any_case() {
        assert_eq!(output_step("capstan.action[Db].output.X"), Some("Db"));
        assert_eq!(output_step("Capstan.Action[Db].Output[web].X"), Some("Db"));
        assert_eq!(output_step("Capstan.Action[*].Output.X"), None);
        assert_eq!(output_step("Capstan.Action[Db].Name"), None);
        assert_eq!(output_step("Project.Url"), None);
    }
}
