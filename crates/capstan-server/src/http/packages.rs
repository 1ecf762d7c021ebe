//! `/api/packages`: the built-in feed. Uploads stream into the blob store and become
//! visible only once complete; "this version exists" is decided by PostgreSQL.

use std::sync::Arc;

use axum::{
    Json,
    extract::{FromRequest, Multipart, Request, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use capstan_api::{
    PackagePage, PackageQuery, PackageResponse, PackageSummary, PackageVersionPage, Problem,
    UploadPackageQuery,
};
use capstan_blob::keys;
use capstan_core::{PACKAGE_EXTENSIONS, PackageFileName, PackageId, PackageVersion};
use capstan_db::{
    DbError,
    audit::Actor,
    packages::{self, NewPackage, PackageRow},
};
use futures::Stream;

use super::{
    ApiError,
    download::{self, Download},
    extract::{ApiPath, ApiQuery},
    paging::MAX_PAGE,
};
use crate::audit::{self, Change, ChangedBy};
use crate::{blobs, node::NodeContext};

const DEFAULT_PAGE: u32 = 50;

/// `POST /api/packages/raw`: upload a package version, as multipart/form-data (a `file`
/// field named `<id>.<version>.<ext>`) or as a raw body with `?id=&version=`.
#[utoipa::path(post, path = "/api/packages/raw", tag = "packages", params(UploadPackageQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 201, body = PackageResponse),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn upload_package(
    State(ctx): State<Arc<NodeContext>>,
    ChangedBy(actor): ChangedBy,
    ApiQuery(query): ApiQuery<UploadPackageQuery>,
    request: Request,
) -> Result<Response, ApiError> {
    blobs::refuse_declared_oversize(&ctx, request.headers())?;
    let multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    if !multipart {
        let (Some(id), Some(version)) = (&query.id, &query.version) else {
            return Err(ApiError::bad_request(
                "a raw upload needs `?id=` and `?version=`; or send multipart/form-data with a \
                 `file` field named <id>.<version>.<extension>",
            ));
        };
        let id = PackageId::parse(id).map_err(ApiError::unprocessable)?;
        let version = PackageVersion::parse(version).map_err(ApiError::unprocessable)?;
        let extension = match query.extension.as_deref() {
            None => "zip",
            Some(given) => PACKAGE_EXTENSIONS
                .iter()
                .find(|ext| **ext == given.trim_start_matches('.'))
                .copied()
                .ok_or_else(|| {
                    ApiError::unprocessable(format!(
                        "`{given}` is not a package extension; use one of {}",
                        PACKAGE_EXTENSIONS.join(", ")
                    ))
                })?,
        };
        let body = request.into_body().into_data_stream();
        return store(&ctx, &actor, &id, &version, extension, query.replace, body).await;
    }

    let mut form = Multipart::from_request(request, &ctx)
        .await
        .map_err(|e| ApiError::bad_request(format!("cannot read the multipart body: {e}")))?;
    loop {
        let field = form
            .next_field()
            .await
            .map_err(|e| ApiError::bad_request(format!("the multipart body is malformed: {e}")))?
            .ok_or_else(|| {
                ApiError::bad_request(
                    "the multipart body has no `file` field; send the package as a field named \
                     `file` whose file name is <id>.<version>.<extension>",
                )
            })?;
        if field.name() != Some("file") {
            continue;
        }
        let name = field.file_name().map(str::to_owned).ok_or_else(|| {
            ApiError::bad_request("the `file` field has no file name (<id>.<version>.<extension>)")
        })?;
        let parsed = PackageFileName::parse(&name).map_err(ApiError::unprocessable)?;
        if query
            .id
            .as_deref()
            .is_some_and(|id| id != parsed.id.as_str())
            || query
                .version
                .as_deref()
                .is_some_and(|v| v != parsed.version.as_str())
        {
            return Err(ApiError::unprocessable(format!(
                "the file name `{name}` says {} {}, but the query says otherwise",
                parsed.id, parsed.version
            )));
        }
        return store(
            &ctx,
            &actor,
            &parsed.id,
            &parsed.version,
            parsed.extension,
            query.replace,
            field,
        )
        .await;
    }
}

async fn store<S, E>(
    ctx: &Arc<NodeContext>,
    actor: &Actor,
    id: &PackageId,
    version: &PackageVersion,
    extension: &str,
    replace: bool,
    body: S,
) -> Result<Response, ApiError>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: std::error::Error + 'static,
{
    let db = |e| ApiError::from_db(e, String::new);
    if !replace
        && packages::exists(&ctx.pools.api, id.as_str(), version.as_str())
            .await
            .map_err(db)?
    {
        return Err(exists(id, version));
    }
    let received = blobs::receive(
        ctx,
        keys::package(id.as_str(), version.as_str()),
        body,
        ctx.settings.max_upload_size,
    )
    .await?;
    let written = &received.written;
    let sort_key = version.sort_key();
    let new = NewPackage {
        package_id: id.as_str(),
        version: version.as_str(),
        sort_key: &sort_key,
        extension,
        size: i64::try_from(written.size).unwrap_or(i64::MAX),
        sha256: &written.sha256,
        blob_key: &written.key,
    };
    let mut tx = audit::begin(&ctx.pools.api).await.map_err(db)?;
    let before = match packages::get(&mut *tx, id.as_str(), version.as_str()).await {
        Ok(row) => Some(to_response(row)),
        Err(DbError::NotFound) => None,
        Err(e) => return Err(db(e)),
    };
    let row = packages::insert(&mut *tx, &new, replace)
        .await
        .map_err(db)?;
    if let Some(row) = &row {
        let mut change = Change::new("package.upload")
            .object(format!("{id}/{version}"), format!("{id} {version}"))
            .after(&to_response(row.clone()));
        if let Some(before) = &before {
            change = change.before(before);
        }
        change.record(&mut *tx, actor).await.map_err(db)?;
    }
    audit::commit(tx).await.map_err(db)?;
    // Either way the row or the garbage list now owns the blob.
    received.keep();
    let Some(row) = row else {
        ctx.blob_sweep.notify_one();
        return Err(exists(id, version));
    };
    if replace {
        ctx.blob_sweep.notify_one();
    }
    let body = to_response(row);
    let location = body.download.trim_end_matches("/raw").to_owned();
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    if let Ok(location) = location.parse() {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

fn exists(id: &PackageId, version: &PackageVersion) -> ApiError {
    ApiError::conflict(format!(
        "package {id} {version} already exists; upload with `?replace=true` to replace it"
    ))
}

/// `GET /api/packages`: package ids with their newest version.
#[utoipa::path(get, path = "/api/packages", tag = "packages", params(PackageQuery), responses(
    (status = 200, body = PackagePage),
))]
pub(crate) async fn list_packages(
    State(ctx): State<Arc<NodeContext>>,
    ApiQuery(query): ApiQuery<PackageQuery>,
) -> Result<Json<PackagePage>, ApiError> {
    let limit = page_size(query.limit)?;
    let rows = packages::list(
        &ctx.pools.api,
        query.q.as_deref().filter(|q| !q.is_empty()),
        query.cursor.as_deref(),
        i64::from(limit) + 1,
    )
    .await
    .map_err(|e| ApiError::from_db(e, String::new))?;
    let mut items: Vec<PackageSummary> = rows
        .into_iter()
        .map(|r| PackageSummary {
            id: r.package_id,
            latest_version: r.latest_version,
            versions: u64::try_from(r.versions).unwrap_or(0),
            total_size: u64::try_from(r.total_size).unwrap_or(0),
            last_uploaded_at: r.last_uploaded_at,
        })
        .collect();
    let next = (items.len() > limit as usize).then(|| {
        items.truncate(limit as usize);
        items.last().map(|p| p.id.clone()).unwrap_or_default()
    });
    Ok(Json(PackagePage { items, next }))
}

/// `GET /api/packages/{id}/versions`: newest version first.
#[utoipa::path(get, path = "/api/packages/{id}/versions", tag = "packages",
    params(("id" = String, Path), PackageQuery), responses(
    (status = 200, body = PackageVersionPage),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn list_versions(
    State(ctx): State<Arc<NodeContext>>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<PackageQuery>,
) -> Result<Json<PackageVersionPage>, ApiError> {
    let id = PackageId::parse(&id).map_err(ApiError::bad_request)?;
    let limit = page_size(query.limit)?;
    let before = match query.cursor.as_deref() {
        None => None,
        Some(cursor) => Some(
            PackageVersion::parse(cursor)
                .map_err(|_| {
                    ApiError::bad_request(format!(
                        "`cursor` must be the `next` of a previous page, got `{cursor}`"
                    ))
                })?
                .sort_key(),
        ),
    };
    let rows = packages::versions(
        &ctx.pools.api,
        id.as_str(),
        before.as_deref(),
        i64::from(limit) + 1,
    )
    .await
    .map_err(|e| ApiError::from_db(e, String::new))?;
    if rows.is_empty() && before.is_none() {
        return Err(ApiError::not_found(format!(
            "there is no package `{id}` in the feed"
        )));
    }
    let mut items: Vec<PackageResponse> = rows.into_iter().map(|(r, _)| to_response(r)).collect();
    let next = (items.len() > limit as usize).then(|| {
        items.truncate(limit as usize);
        items.last().map(|p| p.version.clone()).unwrap_or_default()
    });
    Ok(Json(PackageVersionPage { items, next }))
}

/// `GET /api/packages/{id}/{version}`: one version's metadata.
#[utoipa::path(get, path = "/api/packages/{id}/{version}", tag = "packages",
    params(("id" = String, Path), ("version" = String, Path)), responses(
    (status = 200, body = PackageResponse),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn get_package(
    State(ctx): State<Arc<NodeContext>>,
    ApiPath((id, version)): ApiPath<(String, String)>,
) -> Result<Json<PackageResponse>, ApiError> {
    Ok(Json(to_response(
        crate::packages::find(&ctx, &id, &version).await?,
    )))
}

/// `GET /api/packages/{id}/{version}/raw`: the content, streamed, with `Range`.
#[utoipa::path(get, path = "/api/packages/{id}/{version}/raw", tag = "packages",
    params(("id" = String, Path), ("version" = String, Path)), responses(
    (status = 200, description = "The package", content_type = "application/octet-stream"),
    (status = 206, description = "The requested range", content_type = "application/octet-stream"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 416, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn download_package(
    State(ctx): State<Arc<NodeContext>>,
    ApiPath((id, version)): ApiPath<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let row = crate::packages::find(&ctx, &id, &version).await?;
    send_package(&ctx, &headers, &row).await
}

/// Streams a stored package version, with `Range` and `ETag` (operators and agents).
pub(crate) async fn send_package(
    ctx: &Arc<NodeContext>,
    headers: &HeaderMap,
    row: &PackageRow,
) -> Result<Response, ApiError> {
    download::send(
        ctx,
        headers,
        Download {
            blob_key: &row.blob_key,
            size: u64::try_from(row.size).unwrap_or(0),
            sha256: &row.sha256,
            file_name: format!("{}.{}.{}", row.package_id, row.version, row.extension),
            content_type: download::content_type(&row.extension),
            modified: row.uploaded_at,
        },
    )
    .await
}

/// `DELETE /api/packages/{id}/{version}`.
#[utoipa::path(delete, path = "/api/packages/{id}/{version}", tag = "packages",
    params(("id" = String, Path), ("version" = String, Path)), responses(
    (status = 204, description = "Deleted"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub(crate) async fn delete_package(
    State(ctx): State<Arc<NodeContext>>,
    ChangedBy(actor): ChangedBy,
    ApiPath((id, version)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (id, version) = parse_id_version(&id, &version)?;
    let failed = |e| ApiError::from_db(e, || no_such(&id, &version));
    let mut tx = audit::begin(&ctx.pools.api).await.map_err(failed)?;
    let row = packages::delete(&mut *tx, id.as_str(), version.as_str())
        .await
        .map_err(failed)?;
    Change::new("package.delete")
        .object(format!("{id}/{version}"), format!("{id} {version}"))
        .before(&to_response(row))
        .record(&mut *tx, &actor)
        .await
        .map_err(failed)?;
    audit::commit(tx).await.map_err(failed)?;
    ctx.blob_sweep.notify_one();
    Ok(StatusCode::NO_CONTENT)
}

fn parse_id_version(id: &str, version: &str) -> Result<(PackageId, PackageVersion), ApiError> {
    Ok((
        PackageId::parse(id).map_err(ApiError::bad_request)?,
        PackageVersion::parse(version).map_err(ApiError::bad_request)?,
    ))
}

fn no_such(id: &PackageId, version: &PackageVersion) -> String {
    format!("there is no package {id} {version} in the feed")
}

fn page_size(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit.unwrap_or(DEFAULT_PAGE) {
        n @ 1..=MAX_PAGE => Ok(n),
        n => Err(ApiError::unprocessable(format!(
            "`limit` must be 1 to {MAX_PAGE}, got {n}"
        ))),
    }
}

fn to_response(row: PackageRow) -> PackageResponse {
    PackageResponse {
        download: format!("/api/packages/{}/{}/raw", row.package_id, row.version),
        id: row.package_id,
        version: row.version,
        extension: row.extension,
        size: u64::try_from(row.size).unwrap_or(0),
        sha256: row.sha256,
        uploaded_at: row.uploaded_at,
    }
}
