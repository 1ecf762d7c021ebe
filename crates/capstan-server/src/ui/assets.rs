//! The files pages load (style sheet, scripts), built into the binary. Each is served
//! under a name holding a digest of its content, so a browser may keep it for a year:
//! a new build changes the name. A name with another digest (a page from a node of a
//! different build, during a rolling upgrade) still gets this node's file, but with
//! `no-cache`, so nothing stale is kept.

use std::sync::LazyLock;

use axum::{
    extract::Path,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use sha2::{Digest, Sha256};

struct Asset {
    /// The file's own name, such as `capstan.css`.
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
    /// The name it is served under, such as `capstan.3f2a…9c.css`.
    hashed: String,
}

macro_rules! asset {
    ($name:literal, $path:literal, $type:literal) => {
        (
            $name,
            $type,
            include_bytes!(concat!("../../assets/", $path)).as_slice(),
        )
    };
}

const FILES: &[(&str, &str, &[u8])] = &[
    asset!("capstan.css", "capstan.css", "text/css; charset=utf-8"),
    asset!("capstan.js", "capstan.js", "text/javascript; charset=utf-8"),
    asset!("grid.js", "grid.js", "text/javascript; charset=utf-8"),
    asset!("log.js", "log.js", "text/javascript; charset=utf-8"),
    asset!(
        "htmx.js",
        "vendor/htmx-2.0.11.min.js",
        "text/javascript; charset=utf-8"
    ),
];

static ASSETS: LazyLock<Vec<Asset>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|&(name, content_type, bytes)| {
            let digest = Sha256::digest(bytes);
            let short: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
            let (stem, extension) = name.rsplit_once('.').unwrap_or((name, ""));
            Asset {
                name,
                content_type,
                bytes,
                hashed: format!("{stem}.{short}.{extension}"),
            }
        })
        .collect()
});

/// The address of the asset `name` (one of [`FILES`]).
pub(crate) fn url(name: &str) -> String {
    ASSETS.iter().find(|a| a.name == name).map_or_else(
        || format!("/assets/{name}"),
        |a| format!("/assets/{}", a.hashed),
    )
}

/// `GET /assets/{file}`.
pub(crate) async fn serve(Path(file): Path<String>) -> Response {
    if let Some(asset) = ASSETS.iter().find(|a| a.hashed == file) {
        return with_cache(asset, "public, max-age=31536000, immutable");
    }
    let own_name = |a: &&Asset| {
        let (stem, extension) = a.name.rsplit_once('.').unwrap_or((a.name, ""));
        file.strip_prefix(stem)
            .and_then(|rest| rest.strip_suffix(extension))
            .is_some_and(|middle| middle == "." || middle.starts_with('.') && middle.ends_with('.'))
    };
    match ASSETS.iter().find(own_name) {
        Some(asset) => with_cache(asset, "no-cache"),
        None => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}

fn with_cache(asset: &Asset, cache: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, asset.content_type),
            (header::CACHE_CONTROL, cache),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        asset.bytes,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_a_name_that_changes_with_its_content() {
        for asset in ASSETS.iter() {
            assert_ne!(asset.hashed, asset.name);
            assert!(url(asset.name).ends_with(&asset.hashed));
        }
    }
}
