//! The built-in package feed and task artifacts.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// A stored package version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PackageResponse {
    pub id: String,
    pub version: String,
    /// The archive format: zip, tar.gz, nupkg, ...
    pub extension: String,
    /// Bytes.
    pub size: u64,
    /// Lowercase hex; also the download's `ETag`.
    pub sha256: String,
    #[serde(with = "crate::timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub uploaded_at: OffsetDateTime,
    /// Where to download it from.
    pub download: String,
}

/// One package id in the feed, with its newest version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PackageSummary {
    pub id: String,
    pub latest_version: String,
    /// How many versions are stored.
    pub versions: u64,
    /// Bytes of all versions.
    pub total_size: u64,
    #[serde(with = "crate::timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub last_uploaded_at: OffsetDateTime,
}

/// One page of `GET /api/packages`, by id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PackagePage {
    pub items: Vec<PackageSummary>,
    /// Pass as `?cursor=` for the next page; absent on the last page.
    pub next: Option<String>,
}

/// One page of `GET /api/packages/{id}/versions`, newest version first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PackageVersionPage {
    pub items: Vec<PackageResponse>,
    /// Pass as `?cursor=` for the next page; absent on the last page.
    pub next: Option<String>,
}

/// Search and paging of `GET /api/packages` and `GET /api/packages/{id}/versions`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PackageQuery {
    /// Only ids containing this text (any case). Ignored by the versions list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    /// Items per page, 1-500 (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// The `next` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// Options of `POST /api/packages/raw`. A raw body needs `id` and `version`; a
/// multipart upload takes them from the file name (`<id>.<version>.<ext>`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UploadPackageQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The archive format of a raw body (default zip).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension: Option<String>,
    /// Replace the version if it exists (otherwise 409).
    #[serde(default)]
    pub replace: bool,
}

/// A file a task attached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ArtifactResponse {
    pub task_id: i64,
    pub name: String,
    pub size: u64,
    pub sha256: String,
    #[serde(with = "crate::timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    pub download: String,
}

/// `GET /api/tasks/{id}/artifacts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ArtifactList {
    pub items: Vec<ArtifactResponse>,
}
