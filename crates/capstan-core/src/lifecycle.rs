//! Lifecycles: the order in which a release is promoted through environments.
//!
//! A lifecycle is a list of phases, each a set of environments and a rule saying when
//! a release has completed the phase. A release may be deployed to an environment of
//! phase k only once it has completed every earlier phase that is not optional. This
//! module checks a lifecycle as an operator writes it and makes that decision; the
//! caller supplies the environments where the release has succeeded.
//!
//! A phase may also be automatic (a release that the phases before it let in is
//! deployed to its environments without anyone asking: [`automatic_entries`]) and keep
//! only so many releases ([`Retention`], [`to_delete`]).

use std::collections::HashSet;

/// The most phases a lifecycle holds, and environments a phase holds.
pub const MAX_PHASES: usize = 50;
pub const MAX_PHASE_ENVIRONMENTS: usize = 200;
/// The longest lifecycle or phase name, in characters.
pub const MAX_NAME: usize = 100;
/// The most releases, and days, a phase's retention keeps.
pub const MAX_KEEP_RELEASES: u32 = 10_000;
pub const MAX_KEEP_DAYS: u32 = 36_500;

/// When a release has completed a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressRule {
    /// A successful deployment to every environment of the phase.
    All,
    /// Successful deployments to at least this many of its environments.
    AtLeast(u32),
    /// Never blocks: the release may skip the phase.
    Optional,
}

impl ProgressRule {
    /// The rule's name as stored and sent.
    pub fn kind(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::AtLeast(_) => "at_least",
            Self::Optional => "optional",
        }
    }

    /// The rule from its stored name and count; `None` for an unknown name or an
    /// `at_least` without a count.
    pub fn from_parts(kind: &str, min_count: Option<u32>) -> Option<Self> {
        match (kind, min_count) {
            ("all", _) => Some(Self::All),
            ("optional", _) => Some(Self::Optional),
            ("at_least", Some(n)) => Some(Self::AtLeast(n)),
            _ => None,
        }
    }
}

/// An environment as a phase names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseEnvironment {
    pub id: i64,
    pub name: String,
}

/// How many of the releases whose latest phase is this one are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// The newest N.
    KeepReleases(u32),
    /// Those created within the last D days.
    KeepDays(u32),
}

/// One phase of a stored lifecycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phase {
    pub name: String,
    pub environments: Vec<PhaseEnvironment>,
    pub rule: ProgressRule,
    /// A release the earlier phases let in is deployed to every environment of the
    /// phase without anyone asking.
    pub automatic: bool,
    pub retention: Option<Retention>,
}

/// A phase as an operator writes it, before its environments are looked up.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PhaseDraft<'a> {
    pub name: &'a str,
    pub environments: &'a [String],
    pub rule: &'a str,
    pub min_count: Option<u32>,
    pub automatic: bool,
    pub keep_releases: Option<u32>,
    pub keep_days: Option<u32>,
}

impl PhaseDraft<'_> {
    /// The retention the draft asks for, once [`check_phases`] found no problem.
    pub fn retention(&self) -> Option<Retention> {
        match (self.keep_releases, self.keep_days) {
            (Some(n), _) => Some(Retention::KeepReleases(n)),
            (None, Some(d)) => Some(Retention::KeepDays(d)),
            (None, None) => None,
        }
    }
}

/// A problem with a lifecycle's input: `field` is a path such as `phases[1].environments`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub detail: String,
}

fn problem(field: impl Into<String>, detail: impl Into<String>) -> Problem {
    Problem {
        field: field.into(),
        detail: detail.into(),
    }
}

/// Checks a name of a lifecycle or a phase (`what` says which).
pub fn check_name(name: &str, what: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err(format!("a {what} needs a name"));
    }
    if name.trim() != name {
        return Err(format!("{what} name `{name}` starts or ends with spaces"));
    }
    if name.chars().count() > MAX_NAME {
        return Err(format!("a {what}'s name has at most {MAX_NAME} characters"));
    }
    Ok(())
}

/// Every problem of a lifecycle's phases: none at all, a phase without environments,
/// an environment in two places, an unknown rule, an `at_least` count out of range.
/// Environments are compared without regard to case, as their names are unique so.
pub fn check_phases(phases: &[PhaseDraft<'_>]) -> Vec<Problem> {
    let mut problems = Vec::new();
    if phases.is_empty() {
        problems.push(problem("phases", "a lifecycle needs at least one phase"));
    }
    if phases.len() > MAX_PHASES {
        problems.push(problem(
            "phases",
            format!("a lifecycle has at most {MAX_PHASES} phases"),
        ));
        return problems;
    }
    let mut phase_names = HashSet::new();
    let mut seen: Vec<(String, usize)> = Vec::new();
    for (i, phase) in phases.iter().enumerate() {
        if let Err(e) = check_name(phase.name, "phase") {
            problems.push(problem(format!("phases[{i}].name"), e));
        } else if !phase_names.insert(phase.name.to_lowercase()) {
            problems.push(problem(
                format!("phases[{i}].name"),
                format!("phase `{}` is named twice", phase.name),
            ));
        }
        let field = format!("phases[{i}].environments");
        if phase.environments.is_empty() {
            problems.push(problem(
                &field,
                format!("phase `{}` has no environment", phase.name),
            ));
        }
        if phase.environments.len() > MAX_PHASE_ENVIRONMENTS {
            problems.push(problem(
                &field,
                format!("a phase has at most {MAX_PHASE_ENVIRONMENTS} environments"),
            ));
            continue;
        }
        for (j, environment) in phase.environments.iter().enumerate() {
            let key = environment.to_lowercase();
            match seen.iter().find(|(name, _)| *name == key) {
                Some((_, earlier)) if *earlier == i => problems.push(problem(
                    format!("{field}[{j}]"),
                    format!("environment `{environment}` is named twice in phase `{}`", phase.name),
                )),
                Some((_, earlier)) => problems.push(problem(
                    format!("{field}[{j}]"),
                    format!(
                        "environment `{environment}` is already in phase `{}`; an environment belongs to one phase",
                        phases[*earlier].name
                    ),
                )),
                None => seen.push((key, i)),
            }
        }
        match ProgressRule::from_parts(phase.rule, phase.min_count) {
            Some(ProgressRule::AtLeast(n)) => {
                let count = phase.environments.len();
                if n == 0 || n as usize > count {
                    problems.push(problem(
                        format!("phases[{i}].min_count"),
                        format!(
                            "phase `{}` has {count} environment(s); at_least needs a count from 1 to {count}, not {n}",
                            phase.name
                        ),
                    ));
                }
            }
            Some(_) => {}
            None if phase.rule == "at_least" => problems.push(problem(
                format!("phases[{i}].min_count"),
                "the rule at_least needs a min_count",
            )),
            None => problems.push(problem(
                format!("phases[{i}].rule"),
                format!(
                    "unknown rule `{}`: one of all, at_least, optional",
                    phase.rule
                ),
            )),
        }
        check_automation(phases, i, &mut problems);
    }
    problems
}

/// An automatic phase needs an earlier phase that can hold a release back (otherwise
/// no success ever lets one in), and a retention one limit within range.
fn check_automation(phases: &[PhaseDraft<'_>], i: usize, problems: &mut Vec<Problem>) {
    let phase = &phases[i];
    if phase.automatic && i == 0 {
        problems.push(problem(
            format!("phases[{i}].automatic"),
            format!(
                "phase `{}` is the first: every release may be deployed there from the start, so it cannot be automatic",
                phase.name
            ),
        ));
    } else if phase.automatic && phases[..i].iter().all(|p| p.rule == "optional") {
        problems.push(problem(
            format!("phases[{i}].automatic"),
            format!(
                "every phase before `{}` is optional: every release may be deployed there from the start, so it cannot be automatic",
                phase.name
            ),
        ));
    }
    let field = format!("phases[{i}].retention");
    match (phase.keep_releases, phase.keep_days) {
        (Some(_), Some(_)) => problems.push(problem(
            field,
            "a retention keeps either keep_releases or keep_days, not both",
        )),
        (Some(n), None) if n == 0 || n > MAX_KEEP_RELEASES => problems.push(problem(
            format!("{field}.keep_releases"),
            format!("keep_releases is from 1 to {MAX_KEEP_RELEASES}, not {n}"),
        )),
        (None, Some(d)) if d == 0 || d > MAX_KEEP_DAYS => problems.push(problem(
            format!("{field}.keep_days"),
            format!("keep_days is from 1 to {MAX_KEEP_DAYS}, not {d}"),
        )),
        _ => {}
    }
}

/// Why a release may not be deployed to an environment yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The environment is in none of the lifecycle's phases.
    NotInLifecycle,
    /// An earlier phase is not completed.
    PhaseIncomplete {
        phase: String,
        /// How many successful environments the phase needs, and has.
        needed: usize,
        has: usize,
        /// The phase's environments, and those without a success yet.
        environments: Vec<String>,
        missing: Vec<String>,
    },
}

impl Refusal {
    /// The refusal in words, for release `version` going to `environment` under
    /// lifecycle `lifecycle`.
    pub fn describe(&self, version: &str, environment: &str, lifecycle: &str) -> String {
        match self {
            Self::NotInLifecycle => format!(
                "environment {environment} is in no phase of lifecycle {lifecycle}; \
                 releases of this project cannot be deployed there"
            ),
            Self::PhaseIncomplete {
                phase,
                needed,
                has,
                environments,
                missing,
            } => {
                let all = environments.join(", ");
                let needs = if *needed == environments.len() && *needed > 1 {
                    format!(
                        "it needs successful deployments to all of {all} (missing: {})",
                        missing.join(", ")
                    )
                } else if *needed == 1 {
                    format!("it needs a successful deployment to 1 of {all}")
                } else {
                    format!("it needs successful deployments to {needed} of {all} (it has {has})")
                };
                format!("release {version} has not completed phase {phase}: {needs}")
            }
        }
    }
}

/// Whether a release that has succeeded in `succeeded` (environment ids) may be
/// deployed to `environment`: every non-optional phase before the environment's own
/// must be completed. Phases after it, and the environment's own phase, never block:
/// a redeployment within a phase is always allowed.
pub fn may_deploy(
    phases: &[Phase],
    environment: i64,
    succeeded: &HashSet<i64>,
) -> Result<(), Refusal> {
    let Some(target) = phases
        .iter()
        .position(|p| p.environments.iter().any(|e| e.id == environment))
    else {
        return Err(Refusal::NotInLifecycle);
    };
    for phase in &phases[..target] {
        let needed = match phase.rule {
            ProgressRule::Optional => continue,
            ProgressRule::All => phase.environments.len(),
            ProgressRule::AtLeast(n) => (n as usize).min(phase.environments.len()),
        };
        let missing: Vec<String> = phase
            .environments
            .iter()
            .filter(|e| !succeeded.contains(&e.id))
            .map(|e| e.name.clone())
            .collect();
        let has = phase.environments.len() - missing.len();
        if has < needed {
            return Err(Refusal::PhaseIncomplete {
                phase: phase.name.clone(),
                needed,
                has,
                environments: phase.environments.iter().map(|e| e.name.clone()).collect(),
                missing,
            });
        }
    }
    Ok(())
}

/// The environments of automatic phases a release enters with a success: those it may
/// be deployed to with the successes `after`, and might not with those `before`. Each
/// comes with the index of its phase.
pub fn automatic_entries<'a>(
    phases: &'a [Phase],
    before: &HashSet<i64>,
    after: &HashSet<i64>,
) -> Vec<(usize, &'a PhaseEnvironment)> {
    phases
        .iter()
        .enumerate()
        .filter(|(_, phase)| phase.automatic)
        .flat_map(|(i, phase)| phase.environments.iter().map(move |e| (i, e)))
        .filter(|(_, e)| {
            may_deploy(phases, e.id, after).is_ok() && may_deploy(phases, e.id, before).is_err()
        })
        .collect()
}

/// The latest phase (index) where a release has a success; `None` before its first.
pub fn reached_phase(phases: &[Phase], succeeded: &HashSet<i64>) -> Option<usize> {
    phases
        .iter()
        .rposition(|p| p.environments.iter().any(|e| succeeded.contains(&e.id)))
}

/// A release of a project as retention judges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judged {
    pub id: i64,
    /// The latest phase it reached ([`reached_phase`]).
    pub reached: Option<usize>,
    /// Whole days since it was created.
    pub age_days: u64,
    /// Never deleted: deployed somewhere now, with a deployment queued or running, or the
    /// project's newest release.
    pub protected: bool,
}

/// The releases the phases' retentions delete, of `releases` given newest first. A
/// release is judged by the latest phase it reached, one that reached none by the
/// first; a phase without a retention keeps all of its releases. Protected releases
/// are never deleted, but count among the N a phase keeps.
pub fn to_delete(phases: &[Phase], releases: &[Judged]) -> Vec<i64> {
    let mut kept_in_phase = vec![0u32; phases.len()];
    let mut doomed = Vec::new();
    for release in releases {
        let phase = release.reached.unwrap_or(0);
        let Some(retention) = phases.get(phase).and_then(|p| p.retention) else {
            continue;
        };
        let beyond = match retention {
            Retention::KeepReleases(n) => {
                kept_in_phase[phase] += 1;
                kept_in_phase[phase] > n
            }
            Retention::KeepDays(d) => release.age_days >= u64::from(d),
        };
        if beyond && !release.protected {
            doomed.push(release.id);
        }
    }
    doomed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(id: i64, name: &str) -> PhaseEnvironment {
        PhaseEnvironment {
            id,
            name: name.to_owned(),
        }
    }

    fn phase(name: &str, environments: Vec<PhaseEnvironment>, rule: ProgressRule) -> Phase {
        Phase {
            name: name.to_owned(),
            environments,
            rule,
            automatic: false,
            retention: None,
        }
    }

    /// Dev (1) → Test (at least 1 of Test 2, Staging 3) → Prod (4).
    fn three() -> Vec<Phase> {
        vec![
            phase("Dev", vec![env(1, "Dev")], ProgressRule::All),
            phase(
                "Test",
                vec![env(2, "Test"), env(3, "Staging")],
                ProgressRule::AtLeast(1),
            ),
            phase("Prod", vec![env(4, "Prod")], ProgressRule::All),
        ]
    }

    fn ids(list: &[i64]) -> HashSet<i64> {
        list.iter().copied().collect()
    }

    #[test]
    fn the_first_phase_is_always_open() {
        assert_eq!(may_deploy(&three(), 1, &ids(&[])), Ok(()));
    }

    #[test]
    fn prod_first_is_refused_naming_the_first_incomplete_phase() {
        let refusal = may_deploy(&three(), 4, &ids(&[])).unwrap_err();
        assert_eq!(
            refusal.describe("1.2.0", "Prod", "Standard"),
            "release 1.2.0 has not completed phase Dev: it needs a successful deployment to 1 of Dev"
        );
        let refusal = may_deploy(&three(), 4, &ids(&[1])).unwrap_err();
        assert_eq!(
            refusal.describe("1.2.0", "Prod", "Standard"),
            "release 1.2.0 has not completed phase Test: it needs a successful deployment to 1 of Test, Staging"
        );
    }

    #[test]
    fn at_least_one_of_two_progresses_after_one() {
        assert_eq!(may_deploy(&three(), 4, &ids(&[1, 3])), Ok(()));
        // Within its own phase, the other environment needs nothing more.
        assert_eq!(may_deploy(&three(), 2, &ids(&[1, 3])), Ok(()));
    }

    #[test]
    fn all_names_what_is_missing() {
        let mut phases = three();
        phases[1].rule = ProgressRule::All;
        let refusal = may_deploy(&phases, 4, &ids(&[1, 3])).unwrap_err();
        assert_eq!(
            refusal.describe("2.0", "Prod", "L"),
            "release 2.0 has not completed phase Test: it needs successful deployments to all of Test, Staging (missing: Test)"
        );
    }

    #[test]
    fn optional_phases_never_block() {
        let mut phases = three();
        phases[1].rule = ProgressRule::Optional;
        assert_eq!(may_deploy(&phases, 4, &ids(&[1])), Ok(()));
    }

    #[test]
    fn an_environment_outside_the_lifecycle_is_refused() {
        assert_eq!(
            may_deploy(&three(), 9, &ids(&[1, 2, 3, 4])),
            Err(Refusal::NotInLifecycle)
        );
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn draft<'a>(name: &'a str, environments: &'a [String], rule: &'a str) -> PhaseDraft<'a> {
        PhaseDraft {
            name,
            environments,
            rule,
            ..PhaseDraft::default()
        }
    }

    #[test]
    fn a_good_lifecycle_has_no_problem() {
        let dev = names(&["Dev"]);
        let test = names(&["Test", "Staging"]);
        let mut second = draft("Test", &test, "at_least");
        second.min_count = Some(2);
        assert_eq!(check_phases(&[draft("Dev", &dev, "all"), second]), vec![]);
    }

    #[test]
    fn bad_phases_are_named_by_field() {
        let dev = names(&["Dev"]);
        let again = names(&["dev", "Prod", "Prod"]);
        let none: Vec<String> = vec![];
        let mut counted = draft("Counted", &dev, "at_least");
        counted.min_count = Some(2);
        let problems = check_phases(&[
            draft("Dev", &dev, "all"),
            draft("Again", &again, "all"),
            draft("Empty", &none, "optional"),
            counted,
            draft("Odd", &none, "sometimes"),
        ]);
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "phases[1].environments[0]",
                "phases[1].environments[2]",
                "phases[2].environments",
                "phases[3].environments[0]",
                "phases[3].min_count",
                "phases[4].environments",
                "phases[4].rule",
            ]
        );
        assert!(problems[0].detail.contains("already in phase `Dev`"));
        assert!(problems[2].detail.contains("has no environment"));
        assert!(problems[4].detail.contains("from 1 to 1, not 2"));
    }

    #[test]
    fn a_lifecycle_needs_a_phase_and_at_least_needs_a_count() {
        assert_eq!(check_phases(&[])[0].field, "phases");
        let dev = names(&["Dev"]);
        let problems = check_phases(&[draft("Dev", &dev, "at_least")]);
        assert_eq!(problems[0].field, "phases[0].min_count");
    }
    #[test]
    fn a_success_that_completes_the_phase_before_enters_the_automatic_one() {
        let mut phases = three();
        phases[1].automatic = true;
        phases[1].rule = ProgressRule::All;
        let entered: Vec<i64> = automatic_entries(&phases, &ids(&[]), &ids(&[1]))
            .into_iter()
            .map(|(i, e)| {
                assert_eq!(i, 1);
                e.id
            })
            .collect();
        assert_eq!(entered, [2, 3]);
        // Already in: a second success enters nothing.
        assert!(automatic_entries(&phases, &ids(&[1]), &ids(&[1, 2])).is_empty());
        // Prod is not automatic, even once Test is complete.
        assert!(automatic_entries(&phases, &ids(&[1, 2]), &ids(&[1, 2, 3])).is_empty());
    }

    #[test]
    fn all_of_two_enters_after_the_second_and_at_least_one_after_the_first() {
        let mut phases = vec![
            phase(
                "Dev",
                vec![env(1, "Dev1"), env(2, "Dev2")],
                ProgressRule::All,
            ),
            phase("Test", vec![env(3, "Test")], ProgressRule::All),
        ];
        phases[1].automatic = true;
        assert!(automatic_entries(&phases, &ids(&[]), &ids(&[1])).is_empty());
        assert_eq!(
            automatic_entries(&phases, &ids(&[1]), &ids(&[1, 2])).len(),
            1
        );
        phases[0].rule = ProgressRule::AtLeast(1);
        assert_eq!(automatic_entries(&phases, &ids(&[]), &ids(&[2])).len(), 1);
        assert!(automatic_entries(&phases, &ids(&[2]), &ids(&[1, 2])).is_empty());
    }

    #[test]
    fn the_latest_phase_reached_is_that_of_the_last_success() {
        assert_eq!(reached_phase(&three(), &ids(&[])), None);
        assert_eq!(reached_phase(&three(), &ids(&[1, 3])), Some(1));
        assert_eq!(reached_phase(&three(), &ids(&[4])), Some(2));
    }

    fn judged(id: i64, reached: Option<usize>, age_days: u64, protected: bool) -> Judged {
        Judged {
            id,
            reached,
            age_days,
            protected,
        }
    }

    #[test]
    fn retention_keeps_the_newest_of_each_phase_and_never_a_protected_release() {
        let mut phases = three();
        phases[0].retention = Some(Retention::KeepReleases(2));
        phases[2].retention = Some(Retention::KeepDays(30));
        let releases = [
            judged(9, None, 0, true),
            judged(8, Some(0), 1, false),
            judged(7, Some(0), 2, false),
            judged(6, Some(2), 40, true),
            judged(5, Some(0), 3, true),
            judged(4, Some(1), 100, false),
            judged(3, Some(2), 10, false),
            judged(2, Some(2), 31, false),
            judged(1, Some(0), 50, false),
        ];
        assert_eq!(to_delete(&phases, &releases), [7, 2, 1]);
    }

    #[test]
    fn automatic_first_phases_and_double_retentions_are_problems() {
        let dev = names(&["Dev"]);
        let test = names(&["Test"]);
        let mut first = draft("Dev", &dev, "optional");
        first.automatic = true;
        let mut second = draft("Test", &test, "all");
        second.automatic = true;
        second.keep_releases = Some(3);
        second.keep_days = Some(3);
        let fields: Vec<String> = check_phases(&[first, second])
            .into_iter()
            .map(|p| p.field)
            .collect();
        assert_eq!(
            fields,
            [
                "phases[0].automatic",
                "phases[1].automatic",
                "phases[1].retention"
            ]
        );
        let mut zero = draft("Dev", &dev, "all");
        zero.keep_releases = Some(0);
        assert_eq!(
            check_phases(&[zero])[0].field,
            "phases[0].retention.keep_releases"
        );
    }
}
