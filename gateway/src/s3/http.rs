//! Reading S3 request details: query strings, headers, ranges, conditional headers.

use crate::s3::error::S3Error;
use chrono::{DateTime, Utc};
use http::request::Parts;
use node_rpc::record::VersionRef;
use percent_encoding::percent_decode_str;

/// A request's query parameters, decoded.
pub struct Query(pub Vec<(String, String)>);

impl Query {
    /// Splits a raw query into decoded (name, value) pairs, in order. `+` is a literal plus in
    /// S3 URLs; only %XX is decoded. Escapes that are not UTF-8 decode to U+FFFD: such a query
    /// cannot have been signed as it stands (SDKs sign UTF-8), so it fails authentication.
    pub fn parse(query: &str) -> Query {
        let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
        Query(
            query
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|pair| {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    (decode(k), decode(v))
                })
                .collect(),
        )
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }
}

pub fn header<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts.headers.get(name).and_then(|v| v.to_str().ok())
}

/// The number a request gives as `name` (a query parameter or header), or `default` without one.
pub fn number<T: std::str::FromStr>(
    name: &str,
    value: Option<&str>,
    default: T,
) -> Result<T, S3Error> {
    match value {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|_| {
            S3Error::InvalidArgument(format!(
                "Provided {name} not an integer or within integer range"
            ))
        }),
    }
}

/// A `partNumber` parameter: 1 to 10000, as in S3.
pub fn part_number(value: &str) -> Result<u32, S3Error> {
    value
        .parse()
        .ok()
        .filter(|n| (1..=10_000).contains(n))
        .ok_or_else(|| {
            S3Error::InvalidArgument(
                "Part number must be an integer between 1 and 10000, inclusive".into(),
            )
        })
}

/// A `versionId` parameter: a version's id as S3 shows it, or `null`.
pub fn version_id(value: &str) -> Result<VersionRef, S3Error> {
    (value.parse()).map_err(|()| S3Error::InvalidArgument("Invalid version id specified".into()))
}

/// The inclusive byte span a `Range` header asks for, or `None` for the whole object. A header that
/// is not a single well-formed byte range is ignored, as S3 does; one that starts past the end is
/// `InvalidRange`.
pub fn parse_range(value: Option<&str>, size: u64) -> Result<Option<(u64, u64)>, S3Error> {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((first, last)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (first, last) = (first.trim(), last.trim());
    let span = match (first.parse::<u64>(), last.parse::<u64>()) {
        (Ok(a), Ok(b)) if a <= b => (a, b.min(size.saturating_sub(1))),
        (Ok(_), Ok(_)) => return Ok(None),
        (Ok(a), Err(_)) if last.is_empty() => (a, size.saturating_sub(1)),
        (Err(_), Ok(n)) if first.is_empty() => {
            if n == 0 {
                return Err(S3Error::InvalidRange);
            }
            (size.saturating_sub(n), size.saturating_sub(1))
        }
        _ => return Ok(None),
    };
    if span.0 >= size {
        return Err(S3Error::InvalidRange);
    }
    Ok(Some(span))
}

/// What the conditional headers of a GET or HEAD decide.
#[derive(Debug, PartialEq, Eq)]
pub enum Condition {
    Proceed,
    NotModified,
    Failed,
}

/// Evaluates If-Match, If-None-Match, If-Modified-Since and If-Unmodified-Since in S3's order.
pub fn evaluate_conditions(parts: &Parts, etag: &str, modified: DateTime<Utc>) -> Condition {
    evaluate_prefixed(parts, "", etag, modified)
}

/// The same conditions under a prefix: `x-amz-copy-source-` for a copy's source.
pub fn evaluate_prefixed(
    parts: &Parts,
    prefix: &str,
    etag: &str,
    modified: DateTime<Utc>,
) -> Condition {
    let header = |_: &Parts, name: &str| match prefix {
        "" => header(parts, name),
        _ => header(parts, &format!("{prefix}{name}")),
    };
    let etag_matches = |list: &str| {
        list.split(',')
            .map(|t| t.trim().trim_start_matches("W/").trim_matches('"'))
            .any(|t| t == "*" || t == etag)
    };
    let date = |name| header(parts, name).and_then(|v| httpdate::parse_http_date(v).ok());
    let modified_secs = modified.timestamp();
    let secs = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    };
    match header(parts, "if-match") {
        Some(list) if !etag_matches(list) => return Condition::Failed,
        Some(_) => {}
        None => {
            if date("if-unmodified-since").is_some_and(|t| modified_secs > secs(t)) {
                return Condition::Failed;
            }
        }
    }
    match header(parts, "if-none-match") {
        Some(list) if etag_matches(list) => return Condition::NotModified,
        Some(_) => {}
        None => {
            if date("if-modified-since").is_some_and(|t| modified_secs <= secs(t)) {
                return Condition::NotModified;
            }
        }
    }
    Condition::Proceed
}

/// A request head and its query, as the router gets them (tests of request parsing).
#[cfg(test)]
pub fn request_head(method: &str, uri: &str, headers: &[(&str, &str)]) -> (Parts, Query) {
    let mut builder = http::Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let (parts, ()) = builder.body(()).unwrap().into_parts();
    let query = Query::parse(parts.uri.query().unwrap_or(""));
    (parts, query)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing_keeps_plus_and_decodes_percent() {
        assert_eq!(
            Query::parse("a=b+c&d=%2F&e").0,
            vec![
                ("a".into(), "b+c".into()),
                ("d".into(), "/".into()),
                ("e".into(), "".into())
            ]
        );
    }

    #[test]
    fn ranges() {
        let r = |v: &str, size| parse_range(Some(v), size);
        assert_eq!(r("bytes=0-0", 10).unwrap(), Some((0, 0)));
        assert_eq!(r("bytes=2-5", 10).unwrap(), Some((2, 5)));
        assert_eq!(r("bytes=5-", 10).unwrap(), Some((5, 9)));
        assert_eq!(r("bytes=-3", 10).unwrap(), Some((7, 9)));
        assert_eq!(r("bytes=-30", 10).unwrap(), Some((0, 9)));
        assert_eq!(r("bytes=8-100", 10).unwrap(), Some((8, 9)));
        assert!(matches!(r("bytes=10-", 10), Err(S3Error::InvalidRange)));
        assert!(matches!(r("bytes=0-", 0), Err(S3Error::InvalidRange)));
        assert_eq!(r("bytes=5-2", 10).unwrap(), None);
        assert_eq!(r("bytes=0-1,3-4", 10).unwrap(), None);
        assert_eq!(r("items=0-1", 10).unwrap(), None);
        assert_eq!(r("bytes=x-y", 10).unwrap(), None);
        assert_eq!(r("bytes=99999999999999999999999-", 10).unwrap(), None);
    }

    #[test]
    fn conditions() {
        let parts = |headers: &[(&str, &str)]| {
            let mut b = http::Request::get("/");
            for (k, v) in headers {
                b = b.header(*k, *v);
            }
            b.body(()).unwrap().into_parts().0
        };
        let modified = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let eval = |h: &[(&str, &str)]| evaluate_conditions(&parts(h), "abc", modified);
        assert_eq!(eval(&[]), Condition::Proceed);
        assert_eq!(eval(&[("if-match", "\"abc\"")]), Condition::Proceed);
        assert_eq!(eval(&[("if-match", "\"x\"")]), Condition::Failed);
        assert_eq!(
            eval(&[("if-none-match", "\"abc\"")]),
            Condition::NotModified
        );
        assert_eq!(eval(&[("if-none-match", "*")]), Condition::NotModified);
        let later = httpdate::fmt_http_date(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000),
        );
        let earlier = httpdate::fmt_http_date(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000),
        );
        assert_eq!(
            eval(&[("if-modified-since", &later)]),
            Condition::NotModified
        );
        assert_eq!(eval(&[("if-modified-since", &earlier)]), Condition::Proceed);
        assert_eq!(
            eval(&[("if-unmodified-since", &earlier)]),
            Condition::Failed
        );
        assert_eq!(
            eval(&[("if-match", "\"abc\""), ("if-unmodified-since", &earlier)]),
            Condition::Proceed
        );
    }
}
