//! SigV4: the Authorization header and presigned-URL parsing (`Credentials::authenticate`) and
//! the query-string parsing under it.
//!
//! Input: a request line `METHOD URI`, then one `name: value` header per line. `{date}` and
//! `{day}` are replaced by the current time (`yyyymmddThhmmssZ`) and day (`yyyymmdd`), so that
//! requests get past the clock-skew and expiry checks to the credential scope, the canonical
//! request and the signature comparison.
#![no_main]

use gateway::fuzzing::http::Query;
use gateway::fuzzing::auth::{Credentials, Payload};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let now = chrono::Utc::now();
    let text = text
        .replace("{date}", &now.format("%Y%m%dT%H%M%SZ").to_string())
        .replace("{day}", &now.format("%Y%m%d").to_string());
    let mut lines = text.split('\n');
    let Some((method, uri)) = lines.next().and_then(|l| l.split_once(' ')) else {
        return;
    };
    let mut request = http::Request::builder().method(method).uri(uri.trim_end());
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            request = request.header(name.trim(), value.trim());
        }
    }
    let Ok(request) = request.body(()) else {
        return;
    };
    let (parts, ()) = request.into_parts();
    if let Some(query) = parts.uri.query() {
        let parsed = Query::parse(query);
        assert!(parsed.0.len() <= query.len() / 2 + 1);
    }
    let credentials = Credentials {
        access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
        secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
        region: "us-east-1".into(),
    };
    if let Ok(auth) = credentials.authenticate(&parts, None) {
        // Only a signed streaming payload has a chunk signer.
        assert_eq!(
            auth.chunk_signer.is_some(),
            matches!(auth.payload, Payload::Chunked { signed: true, .. })
                && parts.headers.contains_key("authorization")
        );
    }
});
