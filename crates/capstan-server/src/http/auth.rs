//! Bearer API keys: `CAPSTAN_ADMIN_API_KEY`, or a user's or service account's key
//! (`capk_…`, see [`crate::identity::keys`]). The request's [`Principal`] goes into its
//! extensions. Until roles exist, every valid principal has full access.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    extract::{ConnectInfo, Request, State},
    http::header,
    middleware::Next,
    response::Response,
};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

use super::{ApiError, client_addr::client_addr};
use crate::{
    identity::{ClientAddress, Principal, keys},
    node::NodeContext,
};

pub(crate) async fn require_api_key(
    State(ctx): State<Arc<NodeContext>>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| {
            ApiError::unauthorized("send an API key as `Authorization: Bearer <key>`")
        })?;
    let presented = header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| ApiError::unauthorized("the Authorization header must be `Bearer <key>`"))?;
    if presented.starts_with("capagt_") || presented.starts_with("capreg_") {
        return Err(ApiError::unauthorized(
            "agent credentials and registration tokens reach only the agent protocol (/api/agent/…, /api/agents/register); send an API key",
        ));
    }
    let address = address(&ctx, &request);
    let principal = if presented.starts_with(keys::PREFIX) {
        let key = keys::parse(presented).map_err(|e| ApiError::unauthorized(e.to_string()))?;
        ctx.api_keys
            .authenticate(&ctx.pools.api, &key, address.clone())
            .await
            .map_err(|e| ApiError::from_db(e, String::new))?
            .map_err(|refused| ApiError::unauthorized(refused.to_string()))?
    } else {
        let Some(admin_key) = &ctx.settings.admin_api_key else {
            return Err(ApiError::unauthorized(
                "the API key is not valid (this node has no admin key: CAPSTAN_ADMIN_API_KEY is unset)",
            ));
        };
        if !same_secret(presented, admin_key.expose_secret()) {
            return Err(ApiError::unauthorized("the API key is not valid"));
        }
        Principal::AdminKey
    };
    request.extensions_mut().insert(principal);
    request.extensions_mut().insert(ClientAddress(address));
    Ok(next.run(request).await)
}

/// The client's address, as the request log records it.
fn address(ctx: &NodeContext, request: &Request) -> String {
    let Some(peer) = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip())
    else {
        return "unknown".to_owned();
    };
    let forwarded: Vec<&str> = request
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    client_addr(peer, &forwarded, &ctx.settings.trusted_proxies).to_string()
}

/// Compares digests so the time taken does not reveal how much of a key was right.
fn same_secret(presented: &str, expected: &str) -> bool {
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    keys::same_digest(&a, &b)
}

#[cfg(test)]
mod tests {
    use super::same_secret;

    #[test]
    fn secrets_compare_exactly() {
        assert!(same_secret("abcdefghijklmnop", "abcdefghijklmnop"));
        assert!(!same_secret("abcdefghijklmnoq", "abcdefghijklmnop"));
        assert!(!same_secret("", "abcdefghijklmnop"));
    }
}
