//! Who did something, and how they proved it: the vocabulary of the audit log.

/// What kind of actor made a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActorKind {
    /// A user who logs in.
    Person,
    /// A service account: API keys only.
    Service,
    /// The bootstrap credential `CAPSTAN_ADMIN_API_KEY`.
    AdminKey,
    /// A polling agent.
    Agent,
    /// Nobody proven yet: a failed login.
    Anonymous,
    /// Capstan itself: lifecycle automation, release retention.
    System,
}

impl ActorKind {
    pub const ALL: [ActorKind; 6] = [
        Self::Person,
        Self::Service,
        Self::AdminKey,
        Self::Agent,
        Self::Anonymous,
        Self::System,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Person => "person",
            Self::Service => "service",
            Self::AdminKey => "admin_key",
            Self::Agent => "agent",
            Self::Anonymous => "anonymous",
            Self::System => "system",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{0}` is not an actor kind; use person, service, admin_key, agent, anonymous or system")]
pub struct UnknownActorKind(pub String);

state_text!(ActorKind, UnknownActorKind);

/// How the actor of a request proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    AdminKey,
    ApiKey,
    /// A session begun with a password.
    Password,
    /// A session begun through the OpenID Connect provider.
    Oidc,
    AgentCredential,
    RegistrationToken,
    /// Nothing: a failed login.
    None,
}

impl AuthMethod {
    pub const ALL: [AuthMethod; 7] = [
        Self::AdminKey,
        Self::ApiKey,
        Self::Password,
        Self::Oidc,
        Self::AgentCredential,
        Self::RegistrationToken,
        Self::None,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AdminKey => "admin_key",
            Self::ApiKey => "api_key",
            Self::Password => "password",
            Self::Oidc => "oidc",
            Self::AgentCredential => "agent_credential",
            Self::RegistrationToken => "registration_token",
            Self::None => "none",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "`{0}` is not an authentication method; use admin_key, api_key, password, oidc, agent_credential, registration_token or none"
)]
pub struct UnknownAuthMethod(pub String);

state_text!(AuthMethod, UnknownAuthMethod);

/// The value an audit row shows in place of a sensitive value.
pub fn sensitive_change(changed: bool) -> &'static str {
    if changed { "changed" } else { "unchanged" }
}
