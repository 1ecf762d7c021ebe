//! Bearer API keys. For now the one key is `CAPSTAN_ADMIN_API_KEY`.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::header,
    middleware::Next,
    response::Response,
};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

use super::ApiError;
use crate::node::NodeContext;

pub(crate) async fn require_api_key(
    State(ctx): State<Arc<NodeContext>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(admin_key) = &ctx.settings.admin_api_key else {
        return Err(ApiError::unauthorized(
            "this node has no API key configured (set CAPSTAN_ADMIN_API_KEY)",
        ));
    };
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
    if !same_secret(presented, admin_key.expose_secret()) {
        return Err(ApiError::unauthorized("the API key is not valid"));
    }
    Ok(next.run(request).await)
}

/// Compares digests so the time taken does not reveal how much of a key was right.
fn same_secret(presented: &str, expected: &str) -> bool {
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
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
