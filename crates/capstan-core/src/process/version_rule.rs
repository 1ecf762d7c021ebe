//! Version rules of package actions: `>=1.2, <2`, `=1.4.0`, `1.4.*`.

use std::cmp::Ordering;

use crate::package::PackageVersion;

/// A set of conditions a version must all meet. Pre-releases match only a rule that
/// itself names a pre-release, so `>=1.0` never picks `2.0.0-beta`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRule {
    conditions: Vec<Condition>,
    allows_prerelease: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Condition {
    Compare(Op, PackageVersion),
    /// `1.4.*`: the numbers before the star.
    Prefix(Vec<u64>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{rule}` is not a version rule: {why} (write e.g. `>=1.2, <2` or `1.4.*`)")]
pub struct VersionRuleError {
    rule: String,
    why: String,
}

impl VersionRule {
    pub fn parse(rule: &str) -> Result<Self, VersionRuleError> {
        let error = |why: String| VersionRuleError {
            rule: rule.to_owned(),
            why,
        };
        if rule.trim().is_empty() || rule.len() > 200 {
            return Err(error("it must be 1 to 200 characters".to_owned()));
        }
        let mut conditions = Vec::new();
        let mut allows_prerelease = false;
        for part in rule.split(',').map(str::trim) {
            if part.is_empty() {
                return Err(error("a condition between commas is empty".to_owned()));
            }
            if let Some(prefix) = part.strip_suffix(".*").or(part.strip_suffix('*')) {
                let numbers = if prefix.is_empty() {
                    Vec::new()
                } else {
                    prefix
                        .split('.')
                        .map(str::parse::<u64>)
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|_| error(format!("`{part}` must be numbers before `*`")))?
                };
                conditions.push(Condition::Prefix(numbers));
                continue;
            }
            let (op, version) = [
                (">=", Op::Ge),
                ("<=", Op::Le),
                (">", Op::Gt),
                ("<", Op::Lt),
                ("=", Op::Eq),
            ]
            .iter()
            .find_map(|(text, op)| part.strip_prefix(text).map(|rest| (*op, rest.trim())))
            .unwrap_or((Op::Eq, part));
            let version = PackageVersion::parse(version).map_err(error)?;
            allows_prerelease |= version.is_prerelease();
            conditions.push(Condition::Compare(op, version));
        }
        Ok(Self {
            conditions,
            allows_prerelease,
        })
    }

    pub fn matches(&self, version: &PackageVersion) -> bool {
        if version.is_prerelease() && !self.allows_prerelease {
            return false;
        }
        self.conditions.iter().all(|condition| match condition {
            Condition::Prefix(numbers) => numbers
                .iter()
                .enumerate()
                .all(|(i, n)| version.number(i) == *n),
            Condition::Compare(op, bound) => {
                let order = version.cmp_precedence(bound);
                match op {
                    Op::Eq => order == Ordering::Equal,
                    Op::Gt => order == Ordering::Greater,
                    Op::Ge => order != Ordering::Less,
                    Op::Lt => order == Ordering::Less,
                    Op::Le => order != Ordering::Greater,
                }
            }
        })
    }

    /// The newest of `versions` that the rule allows.
    pub fn newest<'a>(
        &self,
        versions: impl IntoIterator<Item = &'a PackageVersion>,
    ) -> Option<&'a PackageVersion> {
        versions.into_iter().filter(|v| self.matches(v)).max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> PackageVersion {
        PackageVersion::parse(s).unwrap()
    }

    fn newest(rule: &str, versions: &[&str]) -> Option<String> {
        let versions: Vec<_> = versions.iter().map(|s| v(s)).collect();
        VersionRule::parse(rule)
            .unwrap()
            .newest(&versions)
            .map(ToString::to_string)
    }

    #[test]
    fn ranges_pick_the_newest_match() {
        let all = ["1.0.0", "1.2.0", "1.4.1", "1.4.3", "2.0.0", "2.1.0-beta.1"];
        assert_eq!(newest(">=1.2, <2", &all).as_deref(), Some("1.4.3"));
        assert_eq!(newest("1.4.*", &all).as_deref(), Some("1.4.3"));
        assert_eq!(newest("1.*", &all).as_deref(), Some("1.4.3"));
        assert_eq!(newest("=1.2", &all).as_deref(), Some("1.2.0"));
        assert_eq!(newest("1.0.0", &all).as_deref(), Some("1.0.0"));
        assert_eq!(newest("<=1.4.1", &all).as_deref(), Some("1.4.1"));
        assert_eq!(newest(">2", &all), None);
    }

    #[test]
    fn prereleases_match_only_rules_that_name_one() {
        let all = ["2.0.0", "2.1.0-beta.1"];
        assert_eq!(newest(">=1", &all).as_deref(), Some("2.0.0"));
        assert_eq!(
            newest(">=2.1.0-alpha", &all).as_deref(),
            Some("2.1.0-beta.1")
        );
    }

    #[test]
    fn bad_rules_say_why() {
        for (rule, why) in [
            ("", "1 to 200"),
            (">=1.2,", "empty"),
            ("x.*", "numbers before"),
            (">=banana", "not a version"),
        ] {
            let error = VersionRule::parse(rule).unwrap_err().to_string();
            assert!(error.contains(why), "{rule}: {error}");
        }
    }
}
