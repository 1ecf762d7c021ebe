//! Extractors that reject bad input in our words, as problem+json.
//!
//! They also refuse the NUL character (U+0000) in every string an operator sends, in
//! a body, a query or a path, with a 422 naming each field that holds one. PostgreSQL
//! cannot store NUL in text, so without this check it surfaces as a failed query deep
//! in some handler; here no handler can forget it.

use axum::{
    body::{Body, Bytes},
    extract::{FromRequest, FromRequestParts, RawPathParams, Request, rejection::JsonRejection},
    http::request::Parts,
};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{ApiError, problems::Problems};

/// The most NUL-holding fields one answer names.
const MAX_LISTED: usize = 20;

const NUL_DETAIL: &str = "holds a NUL character (U+0000), which cannot be stored; remove it";

/// A JSON body; malformed JSON, wrong types and unknown fields become 400/422 whose
/// detail names the field and position, and NUL in any string a 422 naming its field.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let (parts, body) = request.into_parts();
        let bytes = Bytes::from_request(Request::from_parts(parts.clone(), body), state)
            .await
            .map_err(JsonRejection::from)?;
        nul_in_json(&bytes)?;
        let axum::Json(value) =
            axum::Json::<T>::from_request(Request::from_parts(parts, Body::from(bytes)), state)
                .await?;
        Ok(Self(value))
    }
}

/// A JSON body an agent sends, read as [`ApiJson`] reads one but with NUL kept: what an
/// agent reports is what its scripts printed, and the agent protocol's handlers decide
/// what to keep of it.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct AgentJson<T>(pub T);

/// Path parameters; a malformed id becomes a 400 that says so, NUL a 422.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        // Undecodable parameters are left for `Path` to explain.
        if let Ok(raw) = RawPathParams::from_request_parts(parts, state).await {
            refuse_nul(raw.iter())?;
        }
        let axum::extract::Path(value) =
            axum::extract::Path::<T>::from_request_parts(parts, state).await?;
        Ok(Self(value))
    }
}

/// Query parameters; unknown names and malformed values become a 400 that says which,
/// NUL a 422.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        if let Ok(axum::extract::Query(pairs)) =
            axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
        {
            refuse_nul(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
        }
        let axum::extract::Query(value) = axum::extract::Query::<T>::try_from_uri(&parts.uri)?;
        Ok(Self(value))
    }
}

fn refuse_nul<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> Result<(), ApiError> {
    let mut problems = Problems::new();
    for (name, value) in pairs {
        if name.contains('\0') || value.contains('\0') {
            problems.add(shown(name), NUL_DETAIL);
        }
    }
    Ok(problems.finish()?)
}

/// JSON can carry NUL only as the escape `\u0000`, so bodies without one (nearly all)
/// are not parsed twice.
fn nul_in_json(bytes: &[u8]) -> Result<(), ApiError> {
    if !bytes.windows(6).any(|w| w == b"\\u0000") {
        return Ok(());
    }
    // Invalid JSON is for the deserialiser to explain.
    let Ok(value) = serde_json::from_slice::<Value>(bytes) else {
        return Ok(());
    };
    let mut found = Vec::new();
    nul_fields(&value, &mut String::new(), &mut found);
    let mut problems = Problems::new();
    for field in found {
        problems.add(field, NUL_DETAIL);
    }
    Ok(problems.finish()?)
}

/// The path of every string holding NUL, in the `variables[2].value` form; a member
/// name holding one is its own field.
fn nul_fields(value: &Value, path: &mut String, found: &mut Vec<String>) {
    if found.len() >= MAX_LISTED {
        return;
    }
    match value {
        Value::String(s) if s.contains('\0') => found.push(path.clone()),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                nul_fields(item, path, found);
                path.truncate(len);
            }
        }
        Value::Object(members) => {
            for (name, member) in members {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&shown(name));
                if name.contains('\0') {
                    found.push(path.clone());
                } else {
                    nul_fields(member, path, found);
                }
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// A name as a detail can show it: NUL written as `\0`.
fn shown(name: &str) -> String {
    name.replace('\0', "\\0")
}
