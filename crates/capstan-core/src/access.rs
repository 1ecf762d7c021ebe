//! Who may do what, where: permissions, the built-in roles that group them, grants
//! scoped to projects and environments, and the one pure check [`allows`] that every
//! endpoint's requirement goes through.
//!
//! A grant's scope is two optional sets. `None` means every project (or environment);
//! a set means those only, and an empty set means none at all, so deleting the last
//! project of a grant narrows it to nothing and never widens it to everything.

use std::collections::BTreeSet;

/// One thing a caller may be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    /// See projects, releases, deployments, environments, agents and their tasks.
    View,
    /// Change a project's process and variables.
    EditProcess,
    /// Create and delete releases (and upload packages for them).
    CreateRelease,
    /// Start, cancel and abandon deployments.
    Deploy,
    /// Answer a paused deployment's interventions.
    AnswerInterventions,
    /// Create, rename and delete projects: a project's name and existence are not part
    /// of its process, and a contributor should not be able to delete what they edit.
    ManageProjects,
    /// Create, change and delete environments.
    ManageEnvironments,
    /// Agents, registration tokens and scripts run on agents.
    ManageAgents,
    /// Nodes, the raw task queue and the master key.
    ManageNodes,
    /// Users, API keys of others, teams, roles and grants.
    ManageUsers,
    /// Read the audit log.
    ViewAudit,
    /// Start a deployment while a freeze window holds its project and environment.
    OverrideFreeze,
}

impl Permission {
    pub const ALL: [Permission; 12] = [
        Self::View,
        Self::EditProcess,
        Self::CreateRelease,
        Self::Deploy,
        Self::AnswerInterventions,
        Self::ManageProjects,
        Self::ManageEnvironments,
        Self::ManageAgents,
        Self::ManageNodes,
        Self::ManageUsers,
        Self::ViewAudit,
        Self::OverrideFreeze,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::View => "view",
            Self::EditProcess => "edit_process",
            Self::CreateRelease => "create_release",
            Self::Deploy => "deploy",
            Self::AnswerInterventions => "answer_interventions",
            Self::ManageProjects => "manage_projects",
            Self::ManageEnvironments => "manage_environments",
            Self::ManageAgents => "manage_agents",
            Self::ManageNodes => "manage_nodes",
            Self::ManageUsers => "manage_users",
            Self::ViewAudit => "view_audit",
            Self::OverrideFreeze => "override_freeze",
        }
    }

    /// The text side, or what the caller should have written.
    pub fn parse(text: &str) -> Result<Self, UnknownPermission> {
        text.parse()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "`{0}` is not a permission; use view, edit_process, create_release, deploy, answer_interventions, manage_projects, manage_environments, manage_agents, manage_nodes, manage_users, view_audit or override_freeze"
)]
pub struct UnknownPermission(pub String);

state_text!(Permission, UnknownPermission);

/// A role shipped with Capstan: its name and permissions never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuiltInRole {
    pub name: &'static str,
    pub description: &'static str,
    pub permissions: &'static [Permission],
}

use Permission as P;

pub const PROJECT_VIEWER: BuiltInRole = BuiltInRole {
    name: "project viewer",
    description: "sees projects, releases, deployments, environments and agents",
    permissions: &[P::View],
};
pub const PROJECT_CONTRIBUTOR: BuiltInRole = BuiltInRole {
    name: "project contributor",
    description: "edits processes and variables and creates releases",
    permissions: &[P::View, P::EditProcess, P::CreateRelease],
};
pub const PROJECT_LEAD: BuiltInRole = BuiltInRole {
    name: "project lead",
    description: "a contributor who also deploys, answers interventions and manages projects",
    permissions: &[
        P::View,
        P::EditProcess,
        P::CreateRelease,
        P::Deploy,
        P::AnswerInterventions,
        P::ManageProjects,
    ],
};
pub const DEPLOYER: BuiltInRole = BuiltInRole {
    name: "deployer",
    description: "deploys releases and answers interventions",
    permissions: &[P::View, P::Deploy, P::AnswerInterventions],
};
pub const ENVIRONMENT_MANAGER: BuiltInRole = BuiltInRole {
    name: "environment manager",
    description: "manages environments and the agents in them",
    permissions: &[P::View, P::ManageEnvironments, P::ManageAgents],
};
pub const SYSTEM_ADMINISTRATOR: BuiltInRole = BuiltInRole {
    name: "system administrator",
    description: "everything",
    permissions: &Permission::ALL,
};

/// Every built-in role, in the order lists show them.
pub const BUILT_IN_ROLES: [BuiltInRole; 6] = [
    PROJECT_VIEWER,
    PROJECT_CONTRIBUTOR,
    PROJECT_LEAD,
    DEPLOYER,
    ENVIRONMENT_MANAGER,
    SYSTEM_ADMINISTRATOR,
];

/// A role given to a team, scoped: what its members may do, and where.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Grant {
    pub permissions: BTreeSet<Permission>,
    /// `None`: every project.
    pub projects: Option<BTreeSet<i64>>,
    /// `None`: every environment.
    pub environments: Option<BTreeSet<i64>>,
}

/// Where an action happens: what a grant's scope is held against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Not in any project or environment (nodes, users, the audit log): only a grant
    /// scoped to everything reaches it.
    System,
    /// Shared by every project (the package feed): any grant of the permission,
    /// wherever it is scoped.
    AnyProject,
    /// A project as a whole (its process, variables, releases).
    Project(i64),
    /// An environment outside any project (the environment itself, its agents).
    Environment(i64),
    /// A project in an environment (a deployment).
    Deployment { project: i64, environment: i64 },
}

impl Grant {
    /// Whether this grant alone allows `permission` in `scope`.
    pub fn allows(&self, permission: Permission, scope: Scope) -> bool {
        if !self.permissions.contains(&permission) {
            return false;
        }
        let project = |id: i64| self.projects.as_ref().is_none_or(|set| set.contains(&id));
        let environment = |id: i64| {
            self.environments
                .as_ref()
                .is_none_or(|set| set.contains(&id))
        };
        match scope {
            Scope::System => self.projects.is_none() && self.environments.is_none(),
            Scope::AnyProject => true,
            Scope::Project(p) => project(p),
            Scope::Environment(e) => environment(e),
            Scope::Deployment {
                project: p,
                environment: e,
            } => project(p) && environment(e),
        }
    }
}

/// Whether any of `grants` allows `permission` in `scope`.
pub fn allows(grants: &[Grant], permission: Permission, scope: Scope) -> bool {
    grants.iter().any(|grant| grant.allows(permission, scope))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(role: BuiltInRole, projects: Option<&[i64]>, environments: Option<&[i64]>) -> Grant {
        Grant {
            permissions: role.permissions.iter().copied().collect(),
            projects: projects.map(|p| p.iter().copied().collect()),
            environments: environments.map(|e| e.iter().copied().collect()),
        }
    }

    const SHOP: i64 = 1;
    const BLOG: i64 = 2;
    const TEST: i64 = 10;
    const PRODUCTION: i64 = 11;

    #[test]
    fn permissions_round_trip_through_their_text() {
        for permission in Permission::ALL {
            assert_eq!(Permission::parse(permission.as_str()), Ok(permission));
        }
        assert_eq!(
            Permission::parse("deploy_all"),
            Err(UnknownPermission("deploy_all".to_owned()))
        );
    }

    #[test]
    fn a_deployer_on_shop_in_test_deploys_there_only() {
        let grants = [grant(DEPLOYER, Some(&[SHOP]), Some(&[TEST]))];
        let at = |project, environment| Scope::Deployment {
            project,
            environment,
        };
        assert!(allows(&grants, P::Deploy, at(SHOP, TEST)));
        assert!(!allows(&grants, P::Deploy, at(SHOP, PRODUCTION)));
        assert!(!allows(&grants, P::Deploy, at(BLOG, TEST)));
        assert!(allows(&grants, P::View, Scope::Project(SHOP)));
        assert!(!allows(&grants, P::View, Scope::Project(BLOG)));
        assert!(!allows(&grants, P::EditProcess, Scope::Project(SHOP)));
        assert!(!allows(&grants, P::View, Scope::System));
    }

    #[test]
    fn an_empty_set_means_nothing_and_none_means_everything() {
        let nowhere = [grant(SYSTEM_ADMINISTRATOR, Some(&[]), Some(&[]))];
        for permission in Permission::ALL {
            assert!(!allows(&nowhere, permission, Scope::Project(SHOP)));
            assert!(!allows(&nowhere, permission, Scope::Environment(TEST)));
            assert!(!allows(&nowhere, permission, Scope::System));
        }
        let everywhere = [grant(SYSTEM_ADMINISTRATOR, None, None)];
        for permission in Permission::ALL {
            assert!(allows(&everywhere, permission, Scope::System));
            assert!(allows(&everywhere, permission, at_shop_production()));
        }
    }

    fn at_shop_production() -> Scope {
        Scope::Deployment {
            project: SHOP,
            environment: PRODUCTION,
        }
    }

    #[test]
    fn system_actions_need_a_grant_scoped_to_everything() {
        let scoped = [grant(SYSTEM_ADMINISTRATOR, Some(&[SHOP]), None)];
        assert!(!allows(&scoped, P::ManageUsers, Scope::System));
        assert!(allows(&scoped, P::ManageUsers, Scope::Project(SHOP)));
        assert!(allows(&scoped, P::CreateRelease, Scope::AnyProject));
    }

    #[test]
    fn grants_add_up_but_never_mix_their_scopes() {
        let grants = [
            grant(DEPLOYER, Some(&[SHOP]), Some(&[TEST])),
            grant(PROJECT_VIEWER, Some(&[BLOG]), None),
        ];
        assert!(allows(&grants, P::View, Scope::Project(BLOG)));
        assert!(!allows(
            &grants,
            P::Deploy,
            Scope::Deployment {
                project: BLOG,
                environment: TEST
            }
        ));
        assert!(!allows(&[], P::View, Scope::AnyProject));
    }

    #[test]
    fn built_in_roles_have_distinct_names_and_the_administrator_has_everything() {
        let names: BTreeSet<_> = BUILT_IN_ROLES.iter().map(|r| r.name).collect();
        assert_eq!(names.len(), BUILT_IN_ROLES.len());
        assert_eq!(SYSTEM_ADMINISTRATOR.permissions, &Permission::ALL);
    }
}
