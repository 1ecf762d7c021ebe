//! Scoped variables: one name may have several values, each limited to some
//! environments, machine tags, machines or steps, and the most specific one that
//! applies wins.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::lookup::{VariableMap, key};

/// Where a variable's value applies. An empty dimension does not constrain; values
/// within one dimension are alternatives.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Scope {
    pub environments: Vec<String>,
    pub tags: Vec<String>,
    pub machines: Vec<String>,
    pub steps: Vec<String>,
}

/// Where a value is being resolved: the deployment's environment, and the machine and
/// step being run if there is one.
#[derive(Debug, Clone, Default)]
pub struct ScopeContext {
    pub environment: Option<String>,
    pub machine: Option<String>,
    /// The machine's tags.
    pub tags: Vec<String>,
    pub step: Option<String>,
}

/// One value of a variable, with where it applies.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopedVariable {
    pub name: String,
    pub value: String,
    #[serde(default)]
    pub scope: Scope,
    /// A secret: masked in task logs and never shown back.
    #[serde(default)]
    pub sensitive: bool,
}

impl fmt::Debug for ScopedVariable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Debug output ends up in logs and panics; a sensitive value must not.
        let value: &dyn fmt::Debug = if self.sensitive {
            &"********"
        } else {
            &self.value
        };
        f.debug_struct("ScopedVariable")
            .field("name", &self.name)
            .field("value", value)
            .field("scope", &self.scope)
            .field("sensitive", &self.sensitive)
            .finish()
    }
}

/// How much each constrained dimension adds to [`Scope::specificity`]. Powers of two
/// so that any combination outranks every combination of the dimensions below it:
/// step beats machine + tag + environment.
const STEP_WEIGHT: u32 = 8;
const MACHINE_WEIGHT: u32 = 4;
const TAG_WEIGHT: u32 = 2;
const ENVIRONMENT_WEIGHT: u32 = 1;

impl Scope {
    /// Whether this scope applies in `ctx`: every constrained dimension must match,
    /// and a dimension the context lacks matches nothing.
    pub fn matches(&self, ctx: &ScopeContext) -> bool {
        matches_one(&self.environments, ctx.environment.as_deref())
            && matches_one(&self.machines, ctx.machine.as_deref())
            && matches_one(&self.steps, ctx.step.as_deref())
            && (self.tags.is_empty()
                || ctx
                    .tags
                    .iter()
                    .any(|tag| matches_one(&self.tags, Some(tag))))
    }

    /// Higher is more specific: step 8, machine 4, tag 2, environment 1, summed over
    /// the constrained dimensions.
    pub fn specificity(&self) -> u32 {
        [
            (&self.steps, STEP_WEIGHT),
            (&self.machines, MACHINE_WEIGHT),
            (&self.tags, TAG_WEIGHT),
            (&self.environments, ENVIRONMENT_WEIGHT),
        ]
        .into_iter()
        .filter(|(values, _)| !values.is_empty())
        .map(|(_, weight)| weight)
        .sum()
    }

    /// Whether the scope constrains nothing, so it applies everywhere.
    pub fn is_empty(&self) -> bool {
        self.environments.is_empty()
            && self.tags.is_empty()
            && self.machines.is_empty()
            && self.steps.is_empty()
    }
}

fn matches_one(allowed: &[String], actual: Option<&str>) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let Some(actual) = actual else {
        return false;
    };
    let actual = key(actual);
    allowed.iter().any(|value| key(value) == actual)
}

/// For each name, the value of the most specific matching variable; ties between
/// equally specific matches go to the one listed first.
///
/// One entry per distinct name (case-insensitive) that has a matching value, in the
/// order each name first appears in `vars`.
pub fn resolve<'a>(vars: &'a [ScopedVariable], ctx: &ScopeContext) -> Vec<&'a ScopedVariable> {
    let mut by_name: HashMap<String, Choice<'a>> = HashMap::new();
    for (i, var) in vars.iter().enumerate() {
        let choice = by_name.entry(key(&var.name)).or_insert(Choice {
            first_listed: i,
            best: None,
        });
        if !var.scope.matches(ctx) {
            continue;
        }
        let specificity = var.scope.specificity();
        // Strictly greater: an equally specific later entry does not displace the first.
        if choice.best.is_none_or(|(current, _)| specificity > current) {
            choice.best = Some((specificity, var));
        }
    }
    let mut chosen: Vec<(usize, &'a ScopedVariable)> = by_name
        .into_values()
        .filter_map(|choice| choice.best.map(|(_, var)| (choice.first_listed, var)))
        .collect();
    chosen.sort_by_key(|(first_listed, _)| *first_listed);
    chosen.into_iter().map(|(_, var)| var).collect()
}

/// The running choice for one name while [`resolve`] walks the list.
struct Choice<'a> {
    /// Where the name first appears, which fixes its place in the result.
    first_listed: usize,
    best: Option<(u32, &'a ScopedVariable)>,
}

/// [`resolve`], as a map ready for rendering templates.
pub fn resolve_map(vars: &[ScopedVariable], ctx: &ScopeContext) -> VariableMap {
    resolve(vars, ctx)
        .into_iter()
        .map(|var| (var.name.clone(), var.value.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| (*v).to_owned()).collect()
    }

    fn var(name: &str, value: &str, scope: Scope) -> ScopedVariable {
        ScopedVariable {
            name: name.to_owned(),
            value: value.to_owned(),
            scope,
            sensitive: false,
        }
    }

    fn env(names: &[&str]) -> Scope {
        Scope {
            environments: strings(names),
            ..Scope::default()
        }
    }

    fn production_web01() -> ScopeContext {
        ScopeContext {
            environment: Some("Production".to_owned()),
            machine: Some("web01".to_owned()),
            tags: strings(&["web", "eu"]),
            step: Some("Deploy web".to_owned()),
        }
    }

    #[test]
    fn an_empty_scope_matches_everywhere() {
        assert!(Scope::default().is_empty());
        assert!(Scope::default().matches(&ScopeContext::default()));
        assert!(Scope::default().matches(&production_web01()));
        assert_eq!(Scope::default().specificity(), 0);
    }

    #[test]
    fn values_in_one_dimension_are_alternatives_compared_case_insensitively() {
        let scope = env(&["Staging", "production"]);
        assert!(scope.matches(&production_web01()));
        assert!(!env(&["Staging"]).matches(&production_web01()));
    }

    #[test]
    fn every_constrained_dimension_must_match() {
        let scope = Scope {
            environments: strings(&["Production"]),
            machines: strings(&["web02"]),
            ..Scope::default()
        };
        assert!(!scope.matches(&production_web01()));
        let scope = Scope {
            environments: strings(&["Production"]),
            machines: strings(&["WEB01"]),
            steps: strings(&["deploy web"]),
            tags: strings(&["db", "EU"]),
        };
        assert!(scope.matches(&production_web01()));
    }

    #[test]
    fn a_dimension_the_context_lacks_does_not_match() {
        let ctx = ScopeContext {
            environment: Some("Production".to_owned()),
            ..ScopeContext::default()
        };
        let machine = Scope {
            machines: strings(&["web01"]),
            ..Scope::default()
        };
        let step = Scope {
            steps: strings(&["Deploy web"]),
            ..Scope::default()
        };
        let tag = Scope {
            tags: strings(&["web"]),
            ..Scope::default()
        };
        assert!(!machine.matches(&ctx));
        assert!(!step.matches(&ctx));
        assert!(!tag.matches(&ctx));
        assert!(!env(&["Production"]).matches(&ScopeContext::default()));
    }

    #[test]
    fn specificity_weighs_step_machine_tag_environment() {
        let all = Scope {
            environments: strings(&["a"]),
            tags: strings(&["b"]),
            machines: strings(&["c"]),
            steps: strings(&["d"]),
        };
        assert_eq!(all.specificity(), 15);
        assert_eq!(env(&["a", "b"]).specificity(), 1);
        let step_only = Scope {
            steps: strings(&["d"]),
            ..Scope::default()
        };
        let machine_tag_env = Scope {
            steps: Vec::new(),
            ..all
        };
        assert!(step_only.specificity() > machine_tag_env.specificity());
    }

    #[test]
    fn the_most_specific_match_wins() {
        let machine = Scope {
            machines: strings(&["web01"]),
            ..Scope::default()
        };
        let env_and_machine = Scope {
            environments: strings(&["Production"]),
            machines: strings(&["web01"]),
            ..Scope::default()
        };
        let vars = [
            var("Port", "80", Scope::default()),
            var("Port", "8080", env(&["Production"])),
            var("port", "8081", env_and_machine),
            var("Port", "8082", machine),
            var("Port", "9000", env(&["Staging"])),
        ];
        let resolved = resolve(&vars, &production_web01());
        assert_eq!(resolved.len(), 1);
        assert_eq!(resolved[0].value, "8081");

        let staging = ScopeContext {
            environment: Some("Staging".to_owned()),
            ..ScopeContext::default()
        };
        assert_eq!(resolve(&vars, &staging)[0].value, "9000");
        let test = ScopeContext {
            environment: Some("Test".to_owned()),
            ..ScopeContext::default()
        };
        assert_eq!(resolve(&vars, &test)[0].value, "80");
    }

    #[test]
    fn equally_specific_matches_go_to_the_first_listed() {
        let web = Scope {
            tags: strings(&["web"]),
            ..Scope::default()
        };
        let eu = Scope {
            tags: strings(&["eu"]),
            ..Scope::default()
        };
        let vars = [var("Region", "web", web), var("Region", "eu", eu)];
        assert_eq!(resolve(&vars, &production_web01())[0].value, "web");
    }

    #[test]
    fn names_appear_once_in_first_appearance_order_and_unmatched_names_are_left_out() {
        let vars = [
            var("B", "staging only", env(&["Staging"])),
            var("A", "1", Scope::default()),
            var("b", "2", Scope::default()),
            var("C", "staging only", env(&["Staging"])),
        ];
        let map = resolve_map(&vars, &production_web01());
        let entries: Vec<_> = map.iter().collect();
        assert_eq!(entries, [("b", "2"), ("A", "1")]);
    }

    #[test]
    fn the_worked_example_in_the_docs_resolves_as_its_table_says() {
        let scope =
            |environments: &[&str], tags: &[&str], machines: &[&str], steps: &[&str]| Scope {
                environments: strings(environments),
                tags: strings(tags),
                machines: strings(machines),
                steps: strings(steps),
            };
        let vars = [
            var("Port", "80", Scope::default()),
            var("Port", "8080", scope(&["Production"], &[], &[], &[])),
            var("Port", "8443", scope(&[], &["web"], &[], &[])),
            var("Port", "9000", scope(&[], &[], &["web01"], &[])),
            var("Port", "9001", scope(&["Production"], &[], &["web01"], &[])),
            var("Port", "7000", scope(&[], &[], &[], &["Migrate"])),
        ];
        let cases = [
            ("Test", Some(("web02", "db")), "Deploy", "80"),
            ("Production", Some(("web02", "db")), "Deploy", "8080"),
            ("Staging", Some(("web02", "web")), "Deploy", "8443"),
            ("Test", Some(("web01", "web")), "Deploy", "9000"),
            ("Production", Some(("web01", "web")), "Deploy", "9001"),
            ("Production", Some(("web01", "web")), "Migrate", "7000"),
            ("Production", None, "Notify", "8080"),
        ];
        for (environment, machine, step, expected) in cases {
            let ctx = ScopeContext {
                environment: Some(environment.to_owned()),
                machine: machine.map(|(name, _)| name.to_owned()),
                tags: machine.map(|(_, tag)| strings(&[tag])).unwrap_or_default(),
                step: Some(step.to_owned()),
            };
            let map = resolve_map(&vars, &ctx);
            assert_eq!(map.get("port"), Some(expected), "{ctx:?}");
        }
    }

    #[test]
    fn debug_output_hides_sensitive_values() {
        let mut secret = var("Db.Password", "hunter2", Scope::default());
        secret.sensitive = true;
        let shown = format!("{secret:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(format!("{:?}", var("A", "visible", Scope::default())).contains("visible"));
    }

    #[test]
    fn scopes_deserialize_with_missing_dimensions() {
        let scope: Scope = serde_json::from_str(r#"{"machines":["web01"]}"#).unwrap();
        assert_eq!(scope.machines, ["web01"]);
        assert!(scope.environments.is_empty());
    }
}
