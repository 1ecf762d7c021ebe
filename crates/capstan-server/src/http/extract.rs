//! Extractors that reject bad input in our words, as problem+json.

use axum::extract::{FromRequest, FromRequestParts};

use super::ApiError;

/// A JSON body; malformed JSON, wrong types and unknown fields become 400/422 whose
/// detail names the field and position.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// Path parameters; a malformed id becomes a 400 that says so.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// Query parameters; unknown names and malformed values become a 400 that says which.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);
