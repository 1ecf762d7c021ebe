//! `ApiError`: every error the API returns, mapped to problem+json in one place.

use std::any::Any;

use axum::{
    extract::rejection::{JsonRejection, PathRejection, QueryRejection},
    http::{HeaderValue, Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use capstan_api::{PROBLEM_JSON, Problem};
use capstan_db::DbError;

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub detail: String,
    /// Extra problem members (the failed checks of a ping, say).
    pub problem: Option<Box<Problem>>,
    /// Seconds after which the client may try again (`Retry-After`).
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
            problem: None,
            retry_after: None,
        }
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, detail)
    }

    /// Any other failure: logged in full here, shown to the client only as a 500.
    pub fn internal(error: &dyn std::error::Error) -> Self {
        tracing::error!(error = %error, "request failed: {error:?}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the node failed to handle this request; the cause is in its log",
        )
    }

    /// Maps a database error, naming `what` was looked for when it is missing.
    pub fn from_db(error: DbError, what: impl FnOnce() -> String) -> Self {
        match error {
            DbError::NotFound => Self::not_found(what()),
            DbError::Unavailable(reason) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("database unreachable: {reason}"),
            ),
            DbError::Conflict { constraint } => Self::new(
                StatusCode::CONFLICT,
                format!("the change conflicts with the current state (`{constraint}`)"),
            ),
            DbError::Other(e) if is_untranslatable_text(e.as_ref()) => Self::unprocessable(
                "the request holds text the database cannot store (a NUL character, U+0000); \
                 remove it",
            ),
            other @ (DbError::Other(_) | DbError::Corrupt { .. }) => Self::internal(&other),
        }
    }
}

/// SQLSTATE 22021 (`character_not_in_repertoire`): PostgreSQL refuses NUL in text.
/// The extractors refuse NUL before any query; this catches text that reached a query
/// another way, which is still the client's to fix, not a failure of the node.
fn is_untranslatable_text(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(sqlx::Error::Database(db)) = e.downcast_ref::<sqlx::Error>()
            && db.code().as_deref() == Some("22021")
        {
            return true;
        }
        current = e.source();
    }
    // The task queue's errors reach here as their text only; PostgreSQL words it so.
    error
        .to_string()
        .contains("invalid byte sequence for encoding \"UTF8\": 0x00")
}

impl From<crate::secrets::SecretError> for ApiError {
    /// Only the missing key is the client's to fix (by configuring the cluster); the
    /// rest are failures of the node or its data, logged here. No variant holds a
    /// plaintext, so the log and the body are safe either way.
    fn from(error: crate::secrets::SecretError) -> Self {
        use crate::secrets::SecretError;
        match error {
            SecretError::NoMasterKey => Self::conflict(error.to_string()),
            SecretError::KeyNotHeld { .. } | SecretError::NoActiveKey => {
                tracing::error!("{error}");
                Self::new(StatusCode::SERVICE_UNAVAILABLE, error.to_string())
            }
            SecretError::Db(e) => Self::from_db(e, String::new),
            SecretError::Missing { .. } | SecretError::Undecryptable { .. } => {
                Self::internal(&error)
            }
        }
    }
}

/// A problem+json response.
pub fn problem_response(status: StatusCode, problem: &Problem) -> Response {
    let body = serde_json::to_vec(problem).unwrap_or_default();
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error");
        let mut problem = self.problem.map_or_else(
            || Problem::new(self.status.as_u16(), title, ""),
            |problem| *problem,
        );
        problem.status = self.status.as_u16();
        problem.title = title.to_owned();
        problem.detail = self.detail;
        let mut response = problem_response(self.status, &problem);
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        if let Some(slow) = super::timeout::too_slow(&rejection) {
            return slow;
        }
        let detail = match &rejection {
            JsonRejection::MissingJsonContentType(_) => {
                "send the body as JSON with `Content-Type: application/json`".to_owned()
            }
            JsonRejection::JsonSyntaxError(_) => {
                format!("the body is not valid JSON: {}", inner_cause(&rejection))
            }
            JsonRejection::JsonDataError(_) => {
                format!(
                    "the body does not fit this endpoint: {}",
                    inner_cause(&rejection)
                )
            }
            JsonRejection::BytesRejection(_)
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                format!(
                    "the body is larger than this endpoint accepts ({} KiB; {} MiB for POST /api/tasks/batch)",
                    super::MAX_BODY_BYTES / 1024,
                    super::tasks::MAX_BATCH_BODY_BYTES / (1024 * 1024)
                )
            }
            _ => rejection.body_text(),
        };
        Self::new(rejection.status(), detail)
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            format!("bad path: {}", inner_cause(&rejection)),
        )
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            format!("bad query string: {}", inner_cause(&rejection)),
        )
    }
}

/// Axum's rejection texts lead with a generic sentence; the cause underneath names the
/// field and the position, which is what a person needs.
fn inner_cause(error: &dyn std::error::Error) -> String {
    let mut deepest = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        deepest = cause.to_string();
        source = cause.source();
    }
    deepest
}

pub(crate) async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("there is no {method} {}", uri.path()))
}

pub(crate) async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} does not accept {method}", uri.path()),
    )
}

pub(crate) fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!("request handler panicked: {message}");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the node failed to handle this request; the cause is in its log",
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Text with NUL that reaches PostgreSQL is the client's mistake, not the node's.
    #[tokio::test]
    async fn nul_refused_by_postgres_is_a_422() {
        let url = std::env::var("CAPSTAN_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let mut connection = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
            .await
            .expect("the tests' PostgreSQL");
        let error = sqlx::query("SELECT $1::text")
            .bind("a\0b")
            .execute(&mut connection)
            .await
            .unwrap_err();
        let error = ApiError::from_db(error.into(), String::new);
        assert_eq!(error.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(error.detail.contains("U+0000"), "{}", error.detail);
    }
}
