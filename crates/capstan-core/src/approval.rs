//! Approvals: the rules that make a deployment wait for N members of a team to approve
//! it before it starts, and the decisions those members make. The database supplies
//! the facts (the rule in force, what was decided so far, who asks); this module says
//! what follows from them.

use serde::{Deserialize, Serialize};

/// The fewest and most approvals a rule may need.
pub const MIN_NEEDED: u32 = 1;
pub const MAX_NEEDED: u32 = 10;
/// The longest note of an approval or denial, in bytes.
pub const MAX_NOTE: usize = 4096;

/// What a member decided about a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Approve,
    Deny,
}

impl Decision {
    pub const ALL: [Self; 2] = [Self::Approve, Self::Deny];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Deny => "deny",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{0}` is not a decision; use approve or deny")]
pub struct UnknownDecision(pub String);

state_text!(Decision, UnknownDecision);

/// Checks how many approvals a rule asks for.
pub fn check_needed(needed: u32) -> Result<u32, String> {
    if (MIN_NEEDED..=MAX_NEEDED).contains(&needed) {
        Ok(needed)
    } else {
        Err(format!(
            "a rule needs from {MIN_NEEDED} to {MAX_NEEDED} approvals, not {needed}"
        ))
    }
}

/// Checks the note of an approval or denial; a denial must say why.
pub fn check_note(note: &str, decision: Decision) -> Result<(), String> {
    if note.len() > MAX_NOTE {
        return Err(format!(
            "at most {MAX_NOTE} bytes (4 KiB), not {}",
            note.len()
        ));
    }
    if note.contains('\0') {
        return Err("holds a NUL character (U+0000); remove it".to_owned());
    }
    if decision == Decision::Deny && note.trim().is_empty() {
        return Err("a denial says why: give a note".to_owned());
    }
    Ok(())
}

/// The rule in force for a project in an environment: the project's own, if it has
/// one, overrides the environment's.
pub fn in_force<R>(project_rule: Option<R>, environment_rule: Option<R>) -> Option<R> {
    project_rule.or(environment_rule)
}

/// Where a deployment under a rule stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Enough approvals: it may start.
    Approved,
    /// It waits for `needed - given` more.
    Waiting { given: u32, needed: u32 },
    /// A member denied it: it never starts.
    Denied,
}

/// Where a deployment stands with `approvals` given and, if `denied`, a denial.
pub fn standing(needed: u32, approvals: u32, denied: bool) -> Standing {
    if denied {
        Standing::Denied
    } else if approvals >= needed {
        Standing::Approved
    } else {
        Standing::Waiting {
            given: approvals,
            needed,
        }
    }
}

/// The facts about someone who wants to approve or deny a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decider {
    /// A member of the rule's team.
    pub member: bool,
    /// The person who queued the deployment.
    pub deployer: bool,
    /// Approved or denied this deployment before.
    pub decided: Option<Decision>,
}

/// Why someone may not decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotAllowed {
    /// Not a member of the rule's team.
    NotMember,
    /// The person who queued it, under a rule that forbids it.
    Deployer,
    /// Decided before: one decision per person.
    AlreadyDecided(Decision),
}

/// Whether `decider` may approve or deny under a rule allowing the deployer or not.
pub fn may_decide(decider: Decider, deployer_may_approve: bool) -> Result<(), NotAllowed> {
    if !decider.member {
        return Err(NotAllowed::NotMember);
    }
    if decider.deployer && !deployer_may_approve {
        return Err(NotAllowed::Deployer);
    }
    if let Some(decision) = decider.decided {
        return Err(NotAllowed::AlreadyDecided(decision));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_needs_one_to_ten_approvals() {
        assert!(
            check_needed(0)
                .unwrap_err()
                .contains("from 1 to 10 approvals, not 0")
        );
        assert_eq!(check_needed(1), Ok(1));
        assert_eq!(check_needed(10), Ok(10));
        assert!(check_needed(11).is_err());
    }

    #[test]
    fn a_note_is_at_most_4_kib_and_a_denial_needs_one() {
        assert!(check_note("", Decision::Approve).is_ok());
        assert!(check_note(&"x".repeat(4096), Decision::Approve).is_ok());
        assert!(
            check_note(&"x".repeat(4097), Decision::Approve)
                .unwrap_err()
                .contains("4096")
        );
        assert!(check_note("  ", Decision::Deny).is_err());
        assert!(check_note("a\0b", Decision::Approve).is_err());
        assert!(check_note("not tonight", Decision::Deny).is_ok());
    }

    #[test]
    fn the_project_rule_overrides_the_environment_rule() {
        assert_eq!(in_force(Some(2), Some(1)), Some(2));
        assert_eq!(in_force(None, Some(1)), Some(1));
        assert_eq!(in_force::<u32>(None, None), None);
    }

    #[test]
    fn a_deployment_is_approved_at_n_and_denied_by_one() {
        assert_eq!(
            standing(2, 1, false),
            Standing::Waiting {
                given: 1,
                needed: 2
            }
        );
        assert_eq!(standing(2, 2, false), Standing::Approved);
        assert_eq!(standing(2, 3, false), Standing::Approved);
        assert_eq!(standing(2, 1, true), Standing::Denied);
    }

    #[test]
    fn only_members_decide_once_and_the_deployer_only_if_the_rule_allows() {
        let member = Decider {
            member: true,
            deployer: false,
            decided: None,
        };
        assert_eq!(may_decide(member, false), Ok(()));
        assert_eq!(
            may_decide(
                Decider {
                    member: false,
                    ..member
                },
                true
            ),
            Err(NotAllowed::NotMember)
        );
        let deployer = Decider {
            deployer: true,
            ..member
        };
        assert_eq!(may_decide(deployer, false), Err(NotAllowed::Deployer));
        assert_eq!(may_decide(deployer, true), Ok(()));
        assert_eq!(
            may_decide(
                Decider {
                    decided: Some(Decision::Approve),
                    ..member
                },
                false
            ),
            Err(NotAllowed::AlreadyDecided(Decision::Approve))
        );
        assert_eq!("deny".parse(), Ok(Decision::Deny));
        assert!("maybe".parse::<Decision>().is_err());
    }
}
