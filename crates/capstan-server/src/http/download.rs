//! Streams a stored blob to a client: one byte range at most (`Range: bytes=a-b`,
//! `a-`, `-n`), `ETag` = the content's sha256, `If-None-Match` answered with 304.

use std::{ops::Range, sync::Arc};

use axum::{
    body::Body,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use futures::TryStreamExt;

use super::ApiError;
use crate::{blobs, node::NodeContext};

/// What to send: which blob, how big, and how to name and tag it.
pub(crate) struct Download<'a> {
    pub blob_key: &'a str,
    pub size: u64,
    pub sha256: &'a str,
    pub file_name: String,
    pub content_type: &'static str,
}

/// Answers a GET for `download`, honouring `Range` and `If-None-Match`.
pub(crate) async fn send(
    ctx: &Arc<NodeContext>,
    request_headers: &HeaderMap,
    download: Download<'_>,
) -> Result<Response, ApiError> {
    let etag = format!("\"{}\"", download.sha256);
    if let Some(tags) = request_headers.get(header::IF_NONE_MATCH)
        && tags.to_str().is_ok_and(|t| {
            t.split(',')
                .any(|tag| tag.trim() == etag || tag.trim() == "*")
        })
    {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        insert(&mut response, header::ETAG, &etag);
        return Ok(response);
    }
    let range = match request_headers.get(header::RANGE) {
        None => None,
        Some(value) => {
            let text = value
                .to_str()
                .map_err(|_| unsatisfiable(download.size, "the Range header is not text"))?;
            Some(
                parse_range(text, download.size)
                    .map_err(|why| unsatisfiable(download.size, &why))?,
            )
        }
    };
    let stream = ctx
        .blob
        .stream(download.blob_key, range.clone())
        .await
        .map_err(|e| blobs::store_error(&e))?;
    let sent = ctx.metrics.blob_bytes_sent.clone();
    let body =
        Body::from_stream(stream.inspect_ok(move |chunk| sent.increment(chunk.len() as u64)));
    let (status, length) = match &range {
        Some(r) => (StatusCode::PARTIAL_CONTENT, r.end - r.start),
        None => (StatusCode::OK, download.size),
    };
    let mut response = (status, body).into_response();
    insert(&mut response, header::CONTENT_TYPE, download.content_type);
    insert(&mut response, header::CONTENT_LENGTH, &length.to_string());
    insert(&mut response, header::ACCEPT_RANGES, "bytes");
    insert(&mut response, header::ETAG, &etag);
    insert(
        &mut response,
        header::CONTENT_DISPOSITION,
        &format!("attachment; filename=\"{}\"", download.file_name),
    );
    if let Some(r) = &range {
        insert(
            &mut response,
            header::CONTENT_RANGE,
            &format!("bytes {}-{}/{}", r.start, r.end - 1, download.size),
        );
    }
    Ok(response)
}

fn insert(response: &mut Response, name: header::HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, value);
    }
}

fn unsatisfiable(size: u64, why: &str) -> ApiError {
    ApiError::new(
        StatusCode::RANGE_NOT_SATISFIABLE,
        format!("{why}; the content is {size} bytes (ask for e.g. `Range: bytes=0-1023`)"),
    )
}

/// Reads a single `bytes=` range against a content of `size` bytes.
pub(crate) fn parse_range(header: &str, size: u64) -> Result<Range<u64>, String> {
    let spec = header
        .trim()
        .strip_prefix("bytes=")
        .ok_or_else(|| format!("`{header}` is not a byte range (it must start with `bytes=`)"))?;
    if spec.contains(',') {
        return Err("only one range per request is supported".to_owned());
    }
    let (first, last) = spec
        .split_once('-')
        .ok_or_else(|| format!("`{header}` is not a byte range (write bytes=FIRST-LAST)"))?;
    let number = |s: &str| {
        s.trim()
            .parse::<u64>()
            .map_err(|_| format!("`{header}` is not a byte range (`{s}` is not a number)"))
    };
    let range = match (first.trim().is_empty(), last.trim().is_empty()) {
        (true, true) => return Err(format!("`{header}` names no bytes")),
        // The last n bytes.
        (true, false) => {
            let n = number(last)?;
            if n == 0 {
                return Err("a suffix range of 0 bytes selects nothing".to_owned());
            }
            size.saturating_sub(n)..size
        }
        (false, true) => number(first)?..size,
        (false, false) => {
            let (a, b) = (number(first)?, number(last)?);
            if b < a {
                return Err(format!("`{header}` ends before it starts"));
            }
            a..(b.saturating_add(1)).min(size)
        }
    };
    if range.start >= size {
        return Err(format!(
            "the range starts at byte {}, past the end",
            range.start
        ));
    }
    Ok(range)
}

/// The media type of an archive format.
pub(crate) fn content_type(extension: &str) -> &'static str {
    match extension {
        "zip" | "nupkg" | "jar" | "war" => "application/zip",
        "tar.gz" | "tgz" => "application/gzip",
        "tar" => "application/x-tar",
        "tar.bz2" => "application/x-bzip2",
        "tar.xz" => "application/x-xz",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_of_every_form() {
        assert_eq!(parse_range("bytes=0-99", 1000).unwrap(), 0..100);
        assert_eq!(parse_range("bytes=900-", 1000).unwrap(), 900..1000);
        assert_eq!(parse_range("bytes=-100", 1000).unwrap(), 900..1000);
        assert_eq!(parse_range("bytes=-5000", 1000).unwrap(), 0..1000);
        assert_eq!(parse_range("bytes=990-5000", 1000).unwrap(), 990..1000);
    }

    #[test]
    fn bad_ranges_are_explained() {
        for (header, says) in [
            ("bytes=1000-", "past the end"),
            ("bytes=5-1", "ends before it starts"),
            ("bytes=0-1,5-9", "only one range"),
            ("items=0-1", "must start with `bytes=`"),
            ("bytes=a-b", "is not a number"),
            ("bytes=-", "names no bytes"),
            ("bytes=-0", "selects nothing"),
        ] {
            let err = parse_range(header, 1000).unwrap_err();
            assert!(err.contains(says), "{header}: {err}");
        }
    }
}
