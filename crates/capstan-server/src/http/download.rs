//! Streams a stored blob to a client, as RFC 9110 says a GET of a file is answered:
//! preconditions (`If-Match`, `If-Unmodified-Since`, `If-None-Match`,
//! `If-Modified-Since`) in the RFC's order, then one byte range at most (`Range: bytes=a-b`,
//! `a-`, `-n`) unless `If-Range` says the client holds other content. `ETag` is the
//! content's sha256, `Last-Modified` when it was stored.
//!
//! Hand-written rather than borrowed: tower-http's file service knows no entity tags and
//! serves only local files, and the crates that do both stream from their own entity
//! type and answer failures as plain text, where this API answers problem+json.

use std::{
    ops::Range,
    sync::Arc,
    time::{Duration, SystemTime},
};

use axum::{
    body::Body,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use futures::TryStreamExt;
use time::OffsetDateTime;

use super::ApiError;
use crate::{blobs, node::NodeContext};

/// What to send: which blob, how big, and how to name and tag it.
pub(crate) struct Download<'a> {
    pub blob_key: &'a str,
    pub size: u64,
    pub sha256: &'a str,
    pub file_name: String,
    pub content_type: &'static str,
    /// When the content was stored.
    pub modified: OffsetDateTime,
}

/// Answers a GET (or the HEAD axum routes to it) for `download`.
pub(crate) async fn send(
    ctx: &Arc<NodeContext>,
    request_headers: &HeaderMap,
    download: Download<'_>,
) -> Result<Response, ApiError> {
    let etag = format!("\"{}\"", download.sha256);
    let modified = http_time(download.modified);
    let last_modified = httpdate::fmt_http_date(modified);
    match preconditions(request_headers, &etag, modified) {
        Precondition::Proceed => {}
        Precondition::NotModified => {
            let mut response = StatusCode::NOT_MODIFIED.into_response();
            insert(&mut response, header::ETAG, &etag);
            insert(&mut response, header::LAST_MODIFIED, &last_modified);
            return Ok(response);
        }
        Precondition::Failed(why) => {
            let mut response = ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                format!("{why}: the content's ETag is {etag} and it was stored {last_modified}"),
            )
            .into_response();
            insert(&mut response, header::ETAG, &etag);
            return Ok(response);
        }
    }
    let range = match request_headers.get(header::RANGE) {
        Some(value) if if_range_holds(request_headers, &etag, modified) => {
            let parsed = value
                .to_str()
                .map_err(|_| "the Range header is not text".to_owned())
                .and_then(|text| parse_range(text, download.size));
            match parsed {
                Ok(range) => range,
                Err(why) => return Ok(unsatisfiable(download.size, &why)),
            }
        }
        _ => None,
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
    insert(&mut response, header::LAST_MODIFIED, &last_modified);
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

fn unsatisfiable(size: u64, why: &str) -> Response {
    let mut response = ApiError::new(
        StatusCode::RANGE_NOT_SATISFIABLE,
        format!("{why}; the content is {size} bytes (ask for e.g. `Range: bytes=0-1023`)"),
    )
    .into_response();
    insert(
        &mut response,
        header::CONTENT_RANGE,
        &format!("bytes */{size}"),
    );
    response
}

/// A time as HTTP dates carry it: whole seconds.
fn http_time(at: OffsetDateTime) -> SystemTime {
    let seconds = u64::try_from(at.unix_timestamp()).unwrap_or(0);
    SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
}

/// What the request's preconditions say to do.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Precondition {
    Proceed,
    /// 304: the client's copy is current.
    NotModified,
    /// 412, and which header failed.
    Failed(&'static str),
}

/// Evaluates the preconditions of a GET or HEAD in RFC 9110's order (section 13.2.2):
/// `If-Match`, else `If-Unmodified-Since`; then `If-None-Match`, else
/// `If-Modified-Since`. Dates that do not parse are ignored, as the RFC says.
pub(crate) fn preconditions(headers: &HeaderMap, etag: &str, modified: SystemTime) -> Precondition {
    if let Some(tags) = entity_tags(headers, &header::IF_MATCH) {
        if !tags.matches(etag, Comparison::Strong) {
            return Precondition::Failed("If-Match names no current ETag");
        }
    } else if let Some(since) = http_date(headers, &header::IF_UNMODIFIED_SINCE)
        && modified > since
    {
        return Precondition::Failed("the content changed after If-Unmodified-Since");
    }
    if let Some(tags) = entity_tags(headers, &header::IF_NONE_MATCH) {
        if tags.matches(etag, Comparison::Weak) {
            return Precondition::NotModified;
        }
    } else if let Some(since) = http_date(headers, &header::IF_MODIFIED_SINCE)
        && modified <= since
    {
        return Precondition::NotModified;
    }
    Precondition::Proceed
}

/// Whether a `Range` applies: without `If-Range` always; with it only when it names the
/// current content, by a strong ETag or the exact `Last-Modified` date.
fn if_range_holds(headers: &HeaderMap, etag: &str, modified: SystemTime) -> bool {
    let Some(value) = headers.get(header::IF_RANGE) else {
        return true;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let value = value.trim();
    if value.starts_with('"') || value.starts_with("W/") {
        return EntityTags::parse(value).is_some_and(|tags| {
            matches!(&tags, EntityTags::List(list) if list.len() == 1)
                && tags.matches(etag, Comparison::Strong)
        });
    }
    httpdate::parse_http_date(value).is_ok_and(|date| date == modified)
}

fn http_date(headers: &HeaderMap, name: &header::HeaderName) -> Option<SystemTime> {
    let value = headers.get(name)?.to_str().ok()?;
    httpdate::parse_http_date(value.trim()).ok()
}

/// The entity tags of every `name` header, joined as one list; `None` without any, or
/// when they do not parse (a precondition that cannot be read is not applied).
fn entity_tags(headers: &HeaderMap, name: &header::HeaderName) -> Option<EntityTags> {
    let mut values = headers.get_all(name).iter().peekable();
    values.peek()?;
    let joined = values
        .map(|v| v.to_str().ok())
        .collect::<Option<Vec<_>>>()?
        .join(",");
    EntityTags::parse(&joined)
}

#[derive(Debug, Clone, Copy)]
enum Comparison {
    /// Both tags strong and equal (If-Match, If-Range).
    Strong,
    /// Equal once `W/` is set aside (If-None-Match).
    Weak,
}

/// `*`, or a list of entity tags as (weak, opaque tag with its quotes).
#[derive(Debug)]
enum EntityTags {
    Any,
    List(Vec<(bool, String)>),
}

impl EntityTags {
    /// Reads `*` or `#entity-tag`. An opaque tag may hold commas, so the list is read
    /// quote by quote rather than split.
    fn parse(value: &str) -> Option<Self> {
        if value.trim() == "*" {
            return Some(Self::Any);
        }
        let mut tags = Vec::new();
        let mut rest = value;
        loop {
            rest = rest.trim_start_matches([' ', '\t', ',']);
            if rest.is_empty() {
                break;
            }
            let (weak, tag) = match rest.strip_prefix("W/") {
                Some(tag) => (true, tag),
                None => (false, rest),
            };
            let inner = tag.strip_prefix('"')?;
            let end = inner.find('"')?;
            tags.push((weak, format!("\"{}\"", &inner[..end])));
            rest = &inner[end + 1..];
            if !(rest.is_empty() || rest.starts_with([' ', '\t', ','])) {
                return None;
            }
        }
        (!tags.is_empty()).then_some(Self::List(tags))
    }

    /// Whether the list names `current`, a strong tag.
    fn matches(&self, current: &str, comparison: Comparison) -> bool {
        match self {
            Self::Any => true,
            Self::List(tags) => tags.iter().any(|(weak, tag)| {
                tag == current && (matches!(comparison, Comparison::Weak) || !weak)
            }),
        }
    }
}

/// Reads a `Range` header against a content of `size` bytes: `None` to send the whole
/// content, an error (answered 416) when no range it names can be served.
///
/// A unit other than bytes is ignored, as RFC 9110 requires; several ranges are answered
/// with the whole content, which the RFC allows, rather than multipart/byteranges.
pub(crate) fn parse_range(header: &str, size: u64) -> Result<Option<Range<u64>>, String> {
    let header = header.trim();
    let Some((unit, spec)) = header.split_once('=') else {
        return Ok(None);
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return Ok(None);
    }
    let ranges = spec
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| parse_one_range(header, s, size))
        .collect::<Result<Vec<_>, _>>()?;
    let mut satisfiable = ranges.iter().filter_map(|r| r.clone().ok());
    match (satisfiable.next(), satisfiable.next()) {
        (Some(range), None) => Ok(Some(range)),
        (Some(_), Some(_)) => Ok(None),
        (None, _) => Err(ranges
            .into_iter()
            .find_map(Result::err)
            .unwrap_or_else(|| format!("`{header}` names no bytes"))),
    }
}

/// One `first-last`, `first-` or `-suffix`: a syntax error is `Err`, a well-formed range
/// that selects nothing of this content is `Ok(Err(why))`.
fn parse_one_range(
    header: &str,
    spec: &str,
    size: u64,
) -> Result<Result<Range<u64>, String>, String> {
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
                return Ok(Err("a suffix range of 0 bytes selects nothing".to_owned()));
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
        return Ok(Err(format!(
            "the range starts at byte {}, past the end",
            range.start
        )));
    }
    Ok(Ok(range))
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
        assert_eq!(parse_range("bytes=0-99", 1000).unwrap(), Some(0..100));
        assert_eq!(parse_range("bytes=900-", 1000).unwrap(), Some(900..1000));
        assert_eq!(parse_range("bytes=-100", 1000).unwrap(), Some(900..1000));
        assert_eq!(parse_range("bytes=-5000", 1000).unwrap(), Some(0..1000));
        assert_eq!(
            parse_range("bytes=990-5000", 1000).unwrap(),
            Some(990..1000)
        );
        assert_eq!(parse_range("Bytes=0-0", 1000).unwrap(), Some(0..1));
        // One satisfiable range among unsatisfiable ones is served.
        assert_eq!(parse_range("bytes=5000-,0-9", 1000).unwrap(), Some(0..10));
    }

    #[test]
    fn ranges_answered_with_the_whole_content() {
        for header in ["items=0-1", "pages=1-2", "0-99", "bytes=0-1,5-9"] {
            assert_eq!(parse_range(header, 1000).unwrap(), None, "{header}");
        }
    }

    #[test]
    fn bad_ranges_are_explained() {
        for (header, says) in [
            ("bytes=1000-", "past the end"),
            ("bytes=1000-,2000-3000", "past the end"),
            ("bytes=5-1", "ends before it starts"),
            ("bytes=a-b", "is not a number"),
            ("bytes=-", "names no bytes"),
            ("bytes=", "names no bytes"),
            ("bytes=-0", "selects nothing"),
        ] {
            let err = parse_range(header, 1000).unwrap_err();
            assert!(err.contains(says), "{header}: {err}");
        }
    }

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| (name.clone(), HeaderValue::from_str(value).unwrap()))
            .collect()
    }

    #[test]
    fn entity_tag_lists_are_read_quote_by_quote() {
        const ETAG: &str = "\"abc\"";
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let check = |pairs: &[(header::HeaderName, &str)]| preconditions(&headers(pairs), ETAG, at);
        assert_eq!(
            check(&[(header::IF_NONE_MATCH, "\"x,y\", W/\"abc\"")]),
            Precondition::NotModified
        );
        assert_eq!(
            check(&[(header::IF_NONE_MATCH, "\"a,bc\"")]),
            Precondition::Proceed
        );
        assert_eq!(
            check(&[(header::IF_NONE_MATCH, "abc")]),
            Precondition::Proceed,
            "not a tag"
        );
        assert!(matches!(
            check(&[(header::IF_MATCH, "W/\"abc\"")]),
            Precondition::Failed(_)
        ));
        // An unreadable date is ignored rather than failing the request.
        assert_eq!(
            check(&[(header::IF_UNMODIFIED_SINCE, "yesterday")]),
            Precondition::Proceed
        );
        assert_eq!(
            check(&[(header::IF_MODIFIED_SINCE, "yesterday")]),
            Precondition::Proceed
        );
    }
}
