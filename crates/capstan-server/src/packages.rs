//! Finding package versions in the feed for work that will use them: an ad-hoc
//! script's packages, a package an agent downloads for its command.

use capstan_api::{PackageRef, PackageVersionRef};
use capstan_core::{PackageId, PackageVersion};
use capstan_db::{
    DbError,
    packages::{self, PackageRow},
};

use crate::node::NodeContext;

/// Why a package version could not be found.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// The id or the version is not one a package can have.
    #[error("{0}")]
    Invalid(String),
    #[error("there is no package {id} {version} in the feed")]
    NotInFeed {
        id: PackageId,
        version: PackageVersion,
    },
    #[error(transparent)]
    Db(DbError),
}

/// The feed's row of one package version.
pub async fn find(ctx: &NodeContext, id: &str, version: &str) -> Result<PackageRow, PackageError> {
    let id = PackageId::parse(id).map_err(PackageError::Invalid)?;
    let version = PackageVersion::parse(version).map_err(PackageError::Invalid)?;
    packages::get(&ctx.pools.api, id.as_str(), version.as_str())
        .await
        .map_err(|e| match e {
            DbError::NotFound => PackageError::NotInFeed { id, version },
            other => PackageError::Db(other),
        })
}

/// Each wanted version as a command refers to it, pinned to the content the feed holds
/// now, so that a version replaced later is noticed when the agent downloads it.
pub async fn pin(
    ctx: &NodeContext,
    wanted: &[PackageVersionRef],
) -> Result<Vec<PackageRef>, PackageError> {
    let mut pinned = Vec::with_capacity(wanted.len());
    for package in wanted {
        let row = find(ctx, &package.id, &package.version).await?;
        pinned.push(PackageRef {
            id: row.package_id,
            version: row.version,
            sha256: row.sha256,
            size: u64::try_from(row.size).unwrap_or(0),
            // Filled in per command when it is handed over.
            download: String::new(),
        });
    }
    Ok(pinned)
}
