//! OpenID Connect sign-in: the authorization code flow with PKCE (S256), a nonce and
//! a state, through the `openidconnect` crate.
//!
//! The start and the callback may reach different nodes behind the load balancer, so
//! the pending sign-in is a row (the digest of its `state`). It is bound to the
//! browser that began it by a cookie whose secret never leaves that browser and the
//! node: the PKCE verifier and the nonce are derived from it, so no secret is stored,
//! and a callback replayed in another browser fails.
//!
//! The provider's metadata and keys are fetched with redirects refused: a provider
//! whose well-known URL answers with a redirect is refused rather than followed.
//!
//! A person is matched by (issuer, subject); else a person with the same email, when
//! the provider says the email is verified, is linked; else a person is created.

use std::time::Duration;

use base64::Engine;
use capstan_db::{
    DbError,
    users::{self, NewUser, UserRow},
};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, Scope, TokenResponse,
    core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata},
    reqwest,
};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::sessions::{digest, random_base62};
use crate::config::OidcSettings;

/// The cookie that binds a pending sign-in to its browser.
pub const BROWSER_COOKIE: &str = "capstan_oidc";
/// How long a sign-in may stay at the provider.
pub const PENDING_FOR: Duration = Duration::from_secs(10 * 60);
/// How long the provider may take to answer one request.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);

/// What can go wrong signing in through the provider.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("single sign-on is not configured on this cluster (CAPSTAN_OIDC_ISSUER is unset)")]
    NotConfigured,
    /// The provider could not be reached or answered something unusable.
    #[error("the OpenID provider failed: {0}")]
    Provider(String),
    /// The callback does not belong to a sign-in this browser began, or the provider's
    /// answer did not verify.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Who the provider says signed in.
#[derive(Debug, Clone)]
pub struct ProviderIdentity {
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub preferred_name: Option<String>,
    /// The loopback port of the `capstan login --browser` that began the sign-in.
    pub cli_port: Option<u16>,
}

/// A sign-in sent to the provider: the URL to send the browser to, and the value of
/// the cookie that binds it to the browser.
pub struct Started {
    pub authorize_url: String,
    pub browser_cookie: String,
}

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Started")
            .field("authorize_url", &self.authorize_url)
            .finish_non_exhaustive()
    }
}

fn derived(purpose: &str, browser: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(purpose.as_bytes());
    hasher.update(b":");
    hasher.update(browser.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hasher.finalize())
}

fn http_client() -> Result<reqwest::Client, OidcError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(PROVIDER_TIMEOUT)
        .build()
        .map_err(|e| OidcError::Provider(e.to_string()))
}

/// Capstan's client at a provider known by its metadata: the authorization endpoint
/// is set; the token and user info endpoints are there if the metadata names them.
type ProviderClient = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// The provider's metadata and Capstan's client there.
async fn client(
    settings: &OidcSettings,
    http: &reqwest::Client,
) -> Result<ProviderClient, OidcError> {
    let issuer = IssuerUrl::new(settings.issuer.clone())
        .map_err(|e| OidcError::Provider(format!("the issuer URL is not valid: {e}")))?;
    let metadata = CoreProviderMetadata::discover_async(issuer, http)
        .await
        .map_err(|e| {
            OidcError::Provider(format!(
                "cannot read the provider's metadata at {}/.well-known/openid-configuration (redirects are not followed): {}",
                settings.issuer.trim_end_matches('/'),
                chain(&e)
            ))
        })?;
    let redirect = RedirectUrl::new(settings.redirect_url.clone())
        .map_err(|e| OidcError::Provider(format!("the redirect URL is not valid: {e}")))?;
    Ok(CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(settings.client_id.clone()),
        Some(ClientSecret::new(
            settings.client_secret.expose_secret().to_owned(),
        )),
    )
    .set_redirect_uri(redirect))
}

fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// Begins a sign-in: records it and gives the provider's URL.
/// `cli_port`: begun by `capstan login --browser`, listening on that loopback port.
pub async fn start(
    settings: &OidcSettings,
    db: &sqlx::PgPool,
    cli_port: Option<u16>,
) -> Result<Started, OidcError> {
    let http = http_client()?;
    let client = client(settings, &http).await?;
    let browser = random_base62(43);
    let state = random_base62(32);
    let verifier = PkceCodeVerifier::new(derived("pkce", &browser));
    let nonce = derived("nonce", &browser);
    let state_for_url = state.clone();
    let (url, _, _) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            move || CsrfToken::new(state_for_url),
            move || Nonce::new(nonce),
        )
        .add_scope(Scope::new("email".to_owned()))
        .add_scope(Scope::new("profile".to_owned()))
        .set_pkce_challenge(PkceCodeChallenge::from_code_verifier_sha256(&verifier))
        .url();
    capstan_db::sessions::begin_oidc(
        db,
        &digest(&state),
        &digest(&browser),
        cli_port,
        OffsetDateTime::now_utc() + PENDING_FOR,
    )
    .await?;
    Ok(Started {
        authorize_url: url.to_string(),
        browser_cookie: browser,
    })
}

/// Finishes a sign-in from the provider's callback: who signed in.
pub async fn finish(
    settings: &OidcSettings,
    db: &sqlx::PgPool,
    code: &str,
    state: &str,
    browser: Option<&str>,
) -> Result<ProviderIdentity, OidcError> {
    let (bound, cli_port) = capstan_db::sessions::take_oidc(db, &digest(state))
        .await?
        .ok_or_else(|| {
            OidcError::Refused(
                "this sign-in is unknown, was used already or took longer than 10 minutes; sign in again"
                    .to_owned(),
            )
        })?;
    let browser = browser
        .filter(|b| super::keys::same_digest(&digest(b), &bound))
        .ok_or_else(|| {
            OidcError::Refused(
                "this sign-in was begun in another browser (its cookie is missing); sign in again"
                    .to_owned(),
            )
        })?;
    let http = http_client()?;
    let client = client(settings, &http).await?;
    let tokens = client
        .exchange_code(AuthorizationCode::new(code.to_owned()))
        .map_err(|e| OidcError::Provider(chain(&e)))?
        .set_pkce_verifier(PkceCodeVerifier::new(derived("pkce", browser)))
        .request_async(&http)
        .await
        .map_err(|e| {
            OidcError::Refused(format!("the provider refused the sign-in: {}", chain(&e)))
        })?;
    let id_token = tokens
        .id_token()
        .ok_or_else(|| OidcError::Provider("the provider sent no ID token".to_owned()))?;
    let nonce = Nonce::new(derived("nonce", browser));
    let claims = id_token
        .claims(&client.id_token_verifier(), &nonce)
        .map_err(|e| {
            OidcError::Refused(format!(
                "the provider's ID token does not verify: {}",
                chain(&e)
            ))
        })?;
    let mut identity = ProviderIdentity {
        issuer: settings.issuer.clone(),
        subject: claims.subject().to_string(),
        email: claims.email().map(|e| e.to_string()),
        email_verified: claims.email_verified().unwrap_or(false),
        preferred_name: claims.preferred_username().map(|n| n.to_string()),
        cli_port: cli_port.and_then(|p| u16::try_from(p).ok()),
    };
    // Many providers put the profile claims in the user info only.
    if identity.email.is_none()
        && let Ok(request) = client.user_info(
            tokens.access_token().to_owned(),
            Some(claims.subject().clone()),
        )
    {
        let info: openidconnect::core::CoreUserInfoClaims =
            request.request_async(&http).await.map_err(|e| {
                OidcError::Provider(format!("cannot read the user info: {}", chain(&e)))
            })?;
        identity.email = info.email().map(|e| e.to_string());
        identity.email_verified = info.email_verified().unwrap_or(false);
        if identity.preferred_name.is_none() {
            identity.preferred_name = info.preferred_username().map(|n| n.to_string());
        }
    }
    Ok(identity)
}

/// The person who signed in: matched by subject, linked by verified email, or created.
pub async fn person_for(db: &sqlx::PgPool, who: &ProviderIdentity) -> Result<UserRow, OidcError> {
    if let Some(user) = users::by_oidc_subject(db, &who.issuer, &who.subject).await? {
        return Ok(user);
    }
    if who.email_verified
        && let Some(email) = &who.email
        && let Some(user) = users::link_oidc_by_email(db, email, &who.issuer, &who.subject).await?
    {
        return Ok(user);
    }
    let base: String = who
        .preferred_name
        .clone()
        .or_else(|| {
            who.email
                .as_deref()
                .and_then(|e| e.split('@').next())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| format!("sso-{}", who.subject))
        .chars()
        .filter(|c| !c.is_control())
        .take(super::MAX_NAME - 5)
        .collect();
    let base = if base.trim().is_empty() {
        "sso-user".to_owned()
    } else {
        base.trim().to_owned()
    };
    let email = who.email.as_deref().filter(|_| who.email_verified);
    // A taken name gets a short random suffix; a few tries are plenty.
    for attempt in 0..5 {
        let name = if attempt == 0 {
            base.clone()
        } else {
            format!("{base}-{}", random_base62(4))
        };
        match users::create_oidc_person(
            db,
            &NewUser {
                name: &name,
                display_name: &name,
                email,
                kind: "person",
            },
            &who.issuer,
            &who.subject,
        )
        .await
        {
            Ok(user) => {
                tracing::info!(user.name = %user.name, "created person {} at their first single sign-on", user.name);
                return Ok(user);
            }
            Err(DbError::Conflict { constraint }) if constraint == "users_name" => {}
            Err(DbError::Conflict { constraint }) if constraint == "users_oidc_subject" => {
                // Another node created them meanwhile (a double click).
                if let Some(user) = users::by_oidc_subject(db, &who.issuer, &who.subject).await? {
                    return Ok(user);
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(OidcError::Refused(format!(
        "cannot find a free user name for `{base}`; ask an administrator to create the person"
    )))
}
