//! SigV4 signatures (in the `Authorization` header) for the requests the console forwards, and
//! the canonical encoding of their paths and queries.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use http::header::{HeaderName, HeaderValue};
use http::request::Parts;
use percent_encoding::{percent_decode_str, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};

/// What SigV4 leaves unencoded: letters, digits and `-._~`.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// In a path, `/` too.
const PATH: &AsciiSet = &UNRESERVED.remove(b'/');

/// An access key and its secret.
pub struct Credentials {
    pub access_key: String,
    pub secret_key: String,
}

/// `path` (as a browser percent-encoded it) encoded as a SigV4 canonical URI: every byte but the
/// unreserved ones and `/` percent-encoded, once. The page sends a key as one encoded path
/// segment (`%2F` for its slashes, so that the browser cannot resolve `..` in it); the gateway
/// gets its slashes back.
pub fn canonical_path(path: &str) -> String {
    encode(&percent_decode_str(path).collect::<Vec<u8>>(), PATH)
}

/// `query` (as a browser encoded it, with `encodeURIComponent`) as a SigV4 canonical query: each
/// name and value encoded anew, the pairs sorted.
pub fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (name, value) = p.split_once('=').unwrap_or((p, ""));
            let decode = |s: &str| encode(&percent_decode_str(s).collect::<Vec<u8>>(), UNRESERVED);
            (decode(name), decode(value))
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn encode(bytes: &[u8], set: &'static AsciiSet) -> String {
    percent_encoding::percent_encode(bytes, set).to_string()
}

/// Adds `x-amz-date`, `x-amz-content-sha256` and the `Authorization` header to a request whose
/// URI is already canonical (`canonical_path`, `canonical_query`). Every header it carries is
/// signed, so `parts` must hold only what is sent.
pub fn sign(
    parts: &mut Parts,
    credentials: &Credentials,
    region: &str,
    payload_hash: &str,
    now: DateTime<Utc>,
) {
    let amz_date = now.format("%Y%m%dT%H%M%SZ").to_string();
    let date = &amz_date[..8];
    let headers = &mut parts.headers;
    for (name, value) in [
        ("x-amz-date", &amz_date[..]),
        ("x-amz-content-sha256", payload_hash),
    ] {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_str(value).expect("ASCII"),
        );
    }
    let mut signed: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| {
            let value = String::from_utf8_lossy(v.as_bytes());
            (k.as_str().to_string(), value.trim().to_string())
        })
        .collect();
    signed.sort();
    let names = signed
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let canonical_headers: String = signed.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let canonical = format!(
        "{}\n{}\n{}\n{canonical_headers}\n{names}\n{payload_hash}",
        parts.method,
        parts.uri.path(),
        parts.uri.query().unwrap_or(""),
    );
    let scope = format!("{date}/{region}/s3/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let mut key = hmac(
        format!("AWS4{}", credentials.secret_key).as_bytes(),
        date.as_bytes(),
    );
    for part in [region.as_bytes(), b"s3", b"aws4_request"] {
        key = hmac(&key, part);
    }
    let signature = hex::encode(hmac(&key, to_sign.as_bytes()));
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={names}, Signature={signature}",
        credentials.access_key
    );
    match HeaderValue::from_str(&authorization) {
        Ok(value) => {
            headers.insert(http::header::AUTHORIZATION, value);
        }
        // An access key that cannot go in a header cannot sign anything: the gateway refuses the
        // unsigned request.
        Err(_) => tracing::debug!("an access key that is not a header value"),
    }
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn paths_and_queries_are_encoded_once_as_sigv4_wants() {
        assert_eq!(canonical_path("/b/a%20b/c*d"), "/b/a%20b/c%2Ad");
        assert_eq!(canonical_path("/b/%E2%82%AC%FF"), "/b/%E2%82%AC%FF");
        assert_eq!(canonical_path("/b/a%2F..%2Fc"), "/b/a/../c");
        assert_eq!(
            canonical_query("prefix=a%2Fb&list-type=2&delimiter=%2F"),
            "delimiter=%2F&list-type=2&prefix=a%2Fb"
        );
        assert_eq!(canonical_query("versioning"), "versioning=");
        assert_eq!(canonical_query("x=(1)!"), "x=%281%29%21");
    }

    /// The GET Object example of the SigV4 documentation ("Example: GET Object"), which signs
    /// `host`, `range`, `x-amz-content-sha256` and `x-amz-date`.
    #[test]
    fn signature_matches_the_aws_example() {
        let (mut parts, ()) = http::Request::get("/test.txt")
            .header("host", "examplebucket.s3.amazonaws.com")
            .header("range", "bytes=0-9")
            .body(())
            .unwrap()
            .into_parts();
        let credentials = Credentials {
            access_key: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
        };
        let now = Utc.with_ymd_and_hms(2013, 5, 24, 0, 0, 0).unwrap();
        let empty = hex::encode(Sha256::digest(b""));
        sign(&mut parts, &credentials, "us-east-1", &empty, now);
        let auth = parts.headers["authorization"].to_str().unwrap();
        assert!(
            auth.ends_with(
                "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
            ),
            "{auth}"
        );
    }
}
