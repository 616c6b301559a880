//! Request details the gateway reads from headers and the query: Range, x-amz-copy-source-range,
//! the conditional headers (If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since, and
//! their x-amz-copy-source- forms), x-amz-tagging, the query string, versionId, max-keys and
//! continuation tokens; a browser upload's content type and policy document.
//!
//! Input: 8 bytes of object size (big-endian), then newline-separated fields: Range,
//! copy-source range, If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since, the ETag
//! of the object, x-amz-tagging, a query string.
#![no_main]

use gateway::fuzzing::copy::copy_range;
use gateway::fuzzing::http::{
    evaluate_conditions, evaluate_prefixed, parse_range, Condition, Query,
};
use gateway::fuzzing::post_policy::Policy;
use gateway::fuzzing::{listing, post_form, tagging};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((size, rest)) = data.split_first_chunk::<8>() else {
        return;
    };
    // Small sizes too: the object edge cases are where ranges go wrong.
    let size = match size[0] {
        0x80.. => u64::from_be_bytes(*size),
        _ => u64::from_be_bytes(*size) % 4096,
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let mut fields = text.split('\n');
    let mut next = || fields.next();
    let (range, copy, if_match, if_none, since, unmodified, etag, tags, query) = (
        next(),
        next(),
        next(),
        next(),
        next(),
        next(),
        next().unwrap_or("abc"),
        next(),
        next().unwrap_or(""),
    );

    match parse_range(range, size) {
        Ok(Some((first, last))) => {
            assert!(first <= last && last < size, "{first}-{last} of {size}")
        }
        Ok(None) | Err(_) => {}
    }
    if let Ok((first, last)) = copy_range(copy, size) {
        assert!(first <= last && (last < size || (size == 0 && copy.is_none())));
    }

    let mut request = http::Request::get("/b/k");
    for (name, value) in [
        ("if-match", if_match),
        ("if-none-match", if_none),
        ("if-modified-since", since),
        ("if-unmodified-since", unmodified),
    ] {
        if let Some(value) = value {
            request = request
                .header(name, value)
                .header(format!("x-amz-copy-source-{name}"), value);
        }
    }
    if let Ok(request) = request.body(()) {
        let (parts, ()) = request.into_parts();
        let modified = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let plain = evaluate_conditions(&parts, etag, modified);
        let copied = evaluate_prefixed(&parts, "x-amz-copy-source-", etag, modified);
        assert_eq!(plain, copied);
        if parts.headers.get("if-match").is_some_and(|v| v == "*") {
            assert_ne!(plain, Condition::Failed);
        }
    }

    if let Ok(tags) = tagging::from_header(tags) {
        assert!(tags.len() <= 10);
    }
    // A browser upload's content type and policy document (all of the input as JSON), checked
    // against the query's pairs as form fields.
    let _ = post_form::boundary(text);
    if let Ok(policy) = Policy::from_json(rest) {
        let _ = policy.check(&Query::parse(query).0, "b", chrono::Utc::now());
    }
    let query = Query::parse(query);
    if let Some(version) = query.get("versionId") {
        let _ = gateway::fuzzing::http::version_id(version);
    }
    let _ = listing::max_keys(&query);
    let _ = listing::url_encoding(&query);
    if let Some(token) = query.get("continuation-token") {
        let _ = listing::decode_token(token);
    }
});
