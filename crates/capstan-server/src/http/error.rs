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
            other @ (DbError::Other(_) | DbError::Corrupt { .. } | DbError::Fenced) => {
                Self::internal(&other)
            }
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

impl From<crate::projects::variables::VariablesError> for ApiError {
    fn from(error: crate::projects::variables::VariablesError) -> Self {
        use crate::projects::variables::VariablesError;
        match error {
            VariablesError::Invalid(detail) => Self::unprocessable(detail),
            VariablesError::NoProject(_) => Self::not_found(error.to_string()),
            VariablesError::Outdated { .. } => Self::conflict(error.to_string()),
            VariablesError::Secrets(e) => e.into(),
            VariablesError::Db(e) => Self::from_db(e, String::new),
        }
    }
}

impl From<crate::projects::preview::PreviewError> for ApiError {
    fn from(error: crate::projects::preview::PreviewError) -> Self {
        use crate::projects::preview::PreviewError;
        match error {
            PreviewError::Invalid(detail) => Self::unprocessable(detail),
            PreviewError::NoProject(_) => Self::not_found(error.to_string()),
            PreviewError::Secrets(e) => e.into(),
            PreviewError::Db(e) => Self::from_db(e, String::new),
        }
    }
}

impl From<crate::deployments::DeploymentError> for ApiError {
    fn from(error: crate::deployments::DeploymentError) -> Self {
        use crate::deployments::DeploymentError;
        match error {
            DeploymentError::Invalid(problems) => problems.into(),
            DeploymentError::NotFound(detail) => Self::not_found(detail),
            DeploymentError::Conflict(detail) | DeploymentError::NotPromoted(detail) => {
                Self::conflict(detail)
            }
            DeploymentError::Frozen {
                window,
                until,
                detail,
            } => super::freezes::frozen(window, until, detail),
            e @ DeploymentError::Stored(_) => Self::internal(&e),
            DeploymentError::Db(e) => Self::from_db(e, String::new),
        }
    }
}

impl From<crate::projects::releases::ReleaseError> for ApiError {
    fn from(error: crate::projects::releases::ReleaseError) -> Self {
        use crate::projects::releases::ReleaseError;
        match error {
            ReleaseError::Invalid(problems) => problems.into(),
            ReleaseError::Conflict(detail) => Self::conflict(detail),
            ReleaseError::StoredProcess { .. } => Self::internal(&error),
            ReleaseError::Secrets(e) => e.into(),
            ReleaseError::Db(e) => Self::from_db(e, String::new),
        }
    }
}

impl From<crate::agents::targets::TargetError> for ApiError {
    /// A selection that picks no usable agents is the request's to fix.
    fn from(error: crate::agents::targets::TargetError) -> Self {
        use crate::agents::targets::TargetError;
        match error {
            TargetError::Db(e) => Self::from_db(e, String::new),
            TargetError::NoEnvironment(_)
            | TargetError::Unmatched(_)
            | TargetError::NoMatch
            | TargetError::TooMany => Self::unprocessable(error.to_string()),
        }
    }
}

impl From<crate::packages::PackageError> for ApiError {
    /// A package named in a path: unparsable is a bad path, absent is a 404.
    fn from(error: crate::packages::PackageError) -> Self {
        use crate::packages::PackageError;
        match error {
            PackageError::Invalid(detail) => Self::bad_request(detail),
            PackageError::NotInFeed { .. } => Self::not_found(error.to_string()),
            PackageError::Db(e) => Self::from_db(e, String::new),
        }
    }
}

impl From<crate::identity::IdentityError> for ApiError {
    fn from(error: crate::identity::IdentityError) -> Self {
        use crate::identity::IdentityError;
        match error {
            IdentityError::Invalid(problems) => problems.into(),
            IdentityError::NotFound(detail) => Self::not_found(detail),
            IdentityError::Conflict(detail) => Self::conflict(detail),
            IdentityError::Db(e) => Self::from_db(e, String::new),
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
    use crate::agents::targets::TargetError;
    use crate::invalid::FieldProblems;
    use crate::packages::PackageError;
    use crate::projects::{
        preview::PreviewError, releases::ReleaseError, variables::VariablesError,
    };

    fn errors_of(error: &ApiError) -> serde_json::Value {
        error
            .problem
            .as_ref()
            .and_then(|p| p.extensions.get("errors").cloned())
            .unwrap_or_default()
    }

    #[test]
    fn a_releases_problems_are_one_422_listing_each_by_field() {
        let mut problems = FieldProblems::new();
        problems.add("version", "not a version");
        problems.add("packages[0]", "the process deploys no package `web`");
        let error = ApiError::from(ReleaseError::Invalid(problems));
        assert_eq!(error.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            error.detail,
            "2 problems: version: not a version; packages[0]: the process deploys no package `web`"
        );
        assert_eq!(
            errors_of(&error),
            serde_json::json!([
                {"field": "version", "detail": "not a version"},
                {"field": "packages[0]", "detail": "the process deploys no package `web`"},
            ])
        );
    }

    #[test]
    fn a_single_sentence_refusal_is_a_422_without_a_list() {
        let error = ApiError::from(VariablesError::Invalid("variables[0].name: empty".into()));
        assert_eq!(error.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error.detail, "variables[0].name: empty");
        assert!(error.problem.is_none());
        let error = ApiError::from(PreviewError::Invalid("template: unclosed".into()));
        assert_eq!(error.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(error.problem.is_none());
    }

    #[test]
    fn a_missing_project_is_a_404_and_an_outdated_save_a_409() {
        let error = ApiError::from(VariablesError::NoProject(7));
        assert_eq!(
            (error.status, error.detail.as_str()),
            (StatusCode::NOT_FOUND, "there is no project 7")
        );
        let error = ApiError::from(PreviewError::NoProject(7));
        assert_eq!(error.status, StatusCode::NOT_FOUND);
        let error = ApiError::from(VariablesError::Outdated {
            sent: 1,
            current: 2,
        });
        assert_eq!(error.status, StatusCode::CONFLICT);
        assert!(
            error
                .detail
                .starts_with("the variables changed since you read them")
                && error.detail.ends_with("save with version 2"),
            "{}",
            error.detail
        );
        let error = ApiError::from(ReleaseError::Conflict("taken".into()));
        assert_eq!(error.status, StatusCode::CONFLICT);
    }

    #[test]
    fn a_services_database_outage_is_a_503_whichever_service_met_it() {
        let down = || DbError::Unavailable("connection refused".into());
        for error in [
            ApiError::from(ReleaseError::Db(down())),
            ApiError::from(VariablesError::Db(down())),
            ApiError::from(PreviewError::Db(down())),
            ApiError::from(TargetError::Db(down())),
            ApiError::from(PackageError::Db(down())),
        ] {
            assert_eq!(
                error.status,
                StatusCode::SERVICE_UNAVAILABLE,
                "{}",
                error.detail
            );
        }
    }

    #[test]
    fn a_selection_without_usable_agents_is_a_422_naming_them() {
        let error = ApiError::from(TargetError::Unmatched(vec!["web-1".into(), "web-2".into()]));
        assert_eq!(error.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            error.detail,
            "these agents do not exist, are disabled or do not match the tags and environment: \
             web-1, web-2"
        );
        let error = ApiError::from(TargetError::NoEnvironment("Prod".into()));
        assert_eq!(error.detail, "there is no environment `Prod`");
        let error = ApiError::from(TargetError::TooMany);
        assert_eq!(
            error.detail,
            "more than 10000 agents match; narrow the selection"
        );
    }

    #[test]
    fn a_package_in_a_path_is_a_400_when_malformed_and_a_404_when_absent() {
        let error = ApiError::from(PackageError::Invalid("bad id".into()));
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        let error = ApiError::from(PackageError::NotInFeed {
            id: capstan_core::PackageId::parse("web").unwrap(),
            version: capstan_core::PackageVersion::parse("1.0.0").unwrap(),
        });
        assert_eq!(
            (error.status, error.detail.as_str()),
            (
                StatusCode::NOT_FOUND,
                "there is no package web 1.0.0 in the feed"
            )
        );
    }

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
