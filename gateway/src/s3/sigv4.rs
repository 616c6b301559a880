//! AWS Signature Version 4: the Authorization header and presigned URLs, whose signature seeds the
//! per-chunk signatures of `aws-chunked` bodies (`auth::ChunkSigner`). Signatures are compared in
//! constant time.

use crate::s3::auth::{Authenticated, ChunkSigner, Credentials, Payload};
use crate::s3::error::S3Error;
use crate::s3::http::{header, Query};
use base64::Engine;
use chrono::{DateTime, NaiveDateTime, Utc};
use hmac::{Hmac, Mac};
use http::request::Parts;
use http::{HeaderName, HeaderValue};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};
use std::collections::VecDeque;
use std::sync::Mutex;
use subtle::ConstantTimeEq;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const MAX_SKEW_SECS: i64 = 15 * 60;
const MAX_PRESIGN_SECS: i64 = 7 * 24 * 3600;

/// Everything but RFC 3986's unreserved characters is encoded in canonical URIs and queries.
const STRICT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
const PATH: &AsciiSet = &STRICT.remove(b'/');

/// The query parameters of a presigned URL that make its signature (one of them optional).
pub(super) const QUERY_PARAMS: [&str; 7] = [
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
    CONTENT_SHA256_PARAM,
];
const CONTENT_SHA256_PARAM: &str = "X-Amz-Content-Sha256";

/// Headers that say how a body is signed and framed. A presigned URL's body is authenticated by
/// its signature parameters alone, so as query parameters these would be ignored.
const BODY_FRAMING_HEADERS: [&str; 3] = [
    "x-amz-content-sha256",
    "x-amz-decoded-content-length",
    "x-amz-trailer",
];

/// The signature fields of a browser upload form, which sign its base64 policy document.
pub enum PostSignature<'a> {
    /// `x-amz-algorithm: AWS4-HMAC-SHA256`, `x-amz-credential`, `x-amz-date`, `x-amz-signature`.
    V4 {
        credential: &'a str,
        amz_date: &'a str,
        signature: &'a str,
    },
    /// `AWSAccessKeyId` and `signature` (base64 of HMAC-SHA1 with the secret).
    V2 {
        access_key: &'a str,
        signature: &'a str,
    },
}

/// The access key id a SigV4 request names.
pub(super) fn claimed_key(parts: &Parts) -> Option<String> {
    let credential = match header(parts, "authorization") {
        Some(auth) => auth
            .strip_prefix(ALGORITHM)?
            .split(',')
            .find_map(|field| field.trim().strip_prefix("Credential="))?
            .to_string(),
        None => Query::parse(parts.uri.query().unwrap_or(""))
            .get("X-Amz-Credential")?
            .to_string(),
    };
    Some(credential.split_once('/')?.0.to_string())
}

impl PostSignature<'_> {
    /// The access key id the form says it is signed with.
    pub fn access_key(&self) -> Option<&str> {
        match self {
            PostSignature::V4 { credential, .. } => Some(credential.split_once('/')?.0),
            PostSignature::V2 { access_key, .. } => Some(access_key),
        }
    }
}

impl Credentials {
    /// Checks the signature of a browser upload form over its base64 `policy` field.
    pub fn check_post_policy(
        &self,
        policy: &str,
        signature: PostSignature<'_>,
    ) -> Result<(), S3Error> {
        match signature {
            PostSignature::V4 {
                credential,
                amz_date,
                signature,
            } => {
                if amz_date.len() < 8 {
                    return Err(S3Error::InvalidArgument("bad x-amz-date".into()));
                }
                self.check_scope(credential, amz_date)?;
                let key = self.signing_key(&amz_date[..8]);
                verify(&hex::encode(hmac(&key, policy.as_bytes())), signature)
            }
            PostSignature::V2 {
                access_key,
                signature,
            } => {
                if !bool::from(access_key.as_bytes().ct_eq(self.access_key_id.as_bytes())) {
                    return Err(S3Error::InvalidAccessKeyId);
                }
                let mut mac = Hmac::<sha1::Sha1>::new_from_slice(self.secret_access_key.as_bytes())
                    .expect("HMAC takes keys of any length");
                mac.update(policy.as_bytes());
                let expected =
                    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
                verify(&expected, signature)
            }
        }
    }

    /// Checks a request signed in its Authorization header, `auth`.
    pub(super) fn check_header_auth(
        &self,
        parts: &Parts,
        query: &[(String, String)],
        auth: &str,
    ) -> Result<Authenticated, S3Error> {
        let fields = auth
            .strip_prefix(ALGORITHM)
            .ok_or(S3Error::AuthorizationHeaderMalformed(
                "unsupported algorithm",
            ))?;
        let (mut credential, mut signed_headers, mut signature) = (None, None, None);
        for field in fields.split(',') {
            match field.trim().split_once('=') {
                Some(("Credential", v)) => credential = Some(v),
                Some(("SignedHeaders", v)) => signed_headers = Some(v),
                Some(("Signature", v)) => signature = Some(v),
                _ => {}
            }
        }
        let malformed = S3Error::AuthorizationHeaderMalformed("missing fields");
        let (credential, signed_headers, signature) = match (credential, signed_headers, signature)
        {
            (Some(c), Some(h), Some(s)) => (c, h, s),
            _ => return Err(malformed),
        };
        let amz_date = header(parts, "x-amz-date")
            .ok_or(S3Error::AccessDenied("requests must carry x-amz-date"))?;
        let when = parse_amz_date(amz_date)?;
        if (Utc::now() - when).num_seconds().abs() > MAX_SKEW_SECS {
            return Err(S3Error::RequestTimeTooSkewed);
        }
        let scope = self.check_scope(credential, amz_date)?;
        let payload_hash = header(parts, "x-amz-content-sha256").ok_or_else(|| {
            S3Error::InvalidRequest("Missing required header x-amz-content-sha256".into())
        })?;
        let payload = parse_payload(payload_hash)?;
        require_signed(parts, signed_headers)?;
        let key = self.signing_key(&amz_date[..8]);
        let expected = signature_of(
            &key,
            amz_date,
            &scope,
            &canonical_request(parts, query, signed_headers, payload_hash, false),
        );
        verify(&expected, signature)?;
        let chunk_signer = matches!(payload, Payload::Chunked { signed: true, .. })
            .then(|| ChunkSigner::new(key, amz_date.to_string(), scope, expected));
        Ok(Authenticated {
            payload,
            chunk_signer,
            presigned: false,
        })
    }

    /// Checks a presigned URL, whose signature is in `query`.
    pub(super) fn check_presigned(
        &self,
        parts: &Parts,
        query: &[(String, String)],
    ) -> Result<Authenticated, S3Error> {
        let get = |name: &str| {
            query
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .ok_or(S3Error::AuthorizationQueryParametersError(
                    "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters.",
                ))
        };
        if get("X-Amz-Algorithm")? != ALGORITHM {
            return Err(S3Error::AuthorizationQueryParametersError(
                "X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\"",
            ));
        }
        let amz_date = get("X-Amz-Date")?;
        let when = parse_amz_date(amz_date)?;
        let expires: i64 = get("X-Amz-Expires")?.parse().map_err(|_| {
            S3Error::AuthorizationQueryParametersError(
                "X-Amz-Expires should be a number of seconds",
            )
        })?;
        if expires < 0 {
            return Err(S3Error::AuthorizationQueryParametersError(
                "X-Amz-Expires must be non-negative",
            ));
        }
        if expires > MAX_PRESIGN_SECS {
            return Err(S3Error::AuthorizationQueryParametersError(
                "X-Amz-Expires must be less than a week (in seconds) that is; 604800",
            ));
        }
        let age = (Utc::now() - when).num_seconds();
        if age > expires {
            return Err(S3Error::AccessDenied("Request has expired"));
        }
        if age < -MAX_SKEW_SECS {
            return Err(S3Error::RequestTimeTooSkewed);
        }
        let scope = self.check_scope(get("X-Amz-Credential")?, amz_date)?;
        // The JavaScript SDK names the payload in the query, the others in a header or not at all.
        let payload_hash = header(parts, "x-amz-content-sha256")
            .or_else(|| get(CONTENT_SHA256_PARAM).ok())
            .unwrap_or("UNSIGNED-PAYLOAD");
        let payload = parse_payload(payload_hash)?;
        let signed_headers = get("X-Amz-SignedHeaders")?;
        require_signed(parts, signed_headers)?;
        let key = self.signing_key(&amz_date[..8]);
        let expected = signature_of(
            &key,
            amz_date,
            &scope,
            &canonical_request(parts, query, signed_headers, payload_hash, true),
        );
        verify(&expected, get("X-Amz-Signature")?)?;
        Ok(Authenticated {
            payload,
            chunk_signer: None,
            presigned: true,
        })
    }

    /// Checks `AKID/yyyymmdd/region/s3/aws4_request` and returns the scope (all but the key id).
    fn check_scope(&self, credential: &str, amz_date: &str) -> Result<String, S3Error> {
        let (access_key, scope) = credential
            .split_once('/')
            .ok_or(S3Error::AuthorizationHeaderMalformed("bad Credential"))?;
        if !bool::from(access_key.as_bytes().ct_eq(self.access_key_id.as_bytes())) {
            return Err(S3Error::InvalidAccessKeyId);
        }
        let fields: Vec<&str> = scope.split('/').collect();
        match fields.as_slice() {
            [date, region, "s3", "aws4_request"] if *date == &amz_date[..8] => {
                if *region != self.region {
                    return Err(S3Error::AuthorizationHeaderMalformed(
                        "the region in the credential scope is not this endpoint's region",
                    ));
                }
                Ok(scope.to_string())
            }
            _ => Err(S3Error::AuthorizationHeaderMalformed(
                "bad credential scope",
            )),
        }
    }

    /// The key that signs this day's requests (`date` as `YYYYMMDD`), from those derived lately
    /// when it is one of them.
    fn signing_key(&self, date: &str) -> [u8; 32] {
        let lock = || SIGNING_KEYS.lock().unwrap_or_else(|p| p.into_inner());
        let same = |d: &Derived| {
            d.date == date && d.region == self.region && d.secret == self.secret_access_key
        };
        if let Some(derived) = lock().iter().find(|d| same(d)) {
            return derived.key;
        }
        let key = derive_signing_key(&self.secret_access_key, date, &self.region);
        let mut kept = lock();
        // Another request may have derived it meanwhile: one entry per key.
        if kept.iter().any(same) {
            return key;
        }
        if kept.len() == SIGNING_KEYS_KEPT {
            kept.pop_front();
        }
        kept.push_back(Derived {
            secret: self.secret_access_key.clone(),
            date: date.to_string(),
            region: self.region.clone(),
            key,
        });
        key
    }
}

/// Signing keys derived lately, oldest first: a secret's key changes once a day, and deriving it
/// (four HMACs) on every request was 1.5% of the gateway's CPU under 4 KiB GETs. Looked up by
/// everything the derivation takes, so a key changed or revoked in the key table never matches an
/// old entry (`credentials_for` is asked on every request all the same).
static SIGNING_KEYS: Mutex<VecDeque<Derived>> = Mutex::new(VecDeque::new());
/// At most this many are kept: the keys in use on a day, for most gateways.
const SIGNING_KEYS_KEPT: usize = 64;

struct Derived {
    secret: String,
    date: String,
    region: String,
    key: [u8; 32],
}

fn derive_signing_key(secret: &str, date: &str, region: &str) -> [u8; 32] {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, b"s3");
    hmac(&k_service, b"aws4_request")
}

/// Moves the `x-amz-*` parameters of a presigned URL (other than its signature's) from `query`
/// into the request's headers. S3 reads them as the headers they are named for, and SDKs put
/// headers there when they presign: the JavaScript SDK's GET carries `x-amz-checksum-mode`, its
/// PUT `x-amz-sdk-checksum-algorithm` and `x-amz-checksum-crc32`. The parameters were signed as
/// such; as headers, every handler and the table of refused headers treat them as any other.
/// botocore's SigV2 presigner puts `content-type` and `content-md5` there too, which its
/// signature covers as the headers' values.
pub fn hoist_query_headers(parts: &mut Parts, query: &mut Query) -> Result<(), S3Error> {
    let is_header = |name: &str| {
        (name
            .get(..6)
            .is_some_and(|p| p.eq_ignore_ascii_case("x-amz-"))
            && !QUERY_PARAMS.contains(&name))
            || matches!(name, "content-type" | "content-md5")
    };
    let (hoisted, kept) = std::mem::take(&mut query.0)
        .into_iter()
        .partition(|(name, _)| is_header(name));
    query.0 = kept;
    for (name, value) in hoisted {
        let name = name.to_ascii_lowercase();
        if BODY_FRAMING_HEADERS.contains(&name.as_str()) {
            return Err(S3Error::NotImplemented(
                "A body signature or framing given as a query parameter",
            ));
        }
        let invalid = || S3Error::InvalidArgument(format!("invalid query parameter {name}"));
        let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid())?;
        let value = HeaderValue::from_bytes(value.as_bytes()).map_err(|_| invalid())?;
        // Two values, one of them unseen by whatever reads the first, would be half ignored.
        if let Some(given) = parts.headers.get(&header) {
            if *given == value {
                continue;
            }
            return Err(S3Error::InvalidRequest(format!(
                "{name} is given twice, as a header and a query parameter, with two values"
            )));
        }
        parts.headers.insert(header, value);
    }
    Ok(())
}

/// As S3 does: `host` and every `x-amz-*` header the request carries must be signed, or a relay
/// could add metadata, tags or conditions to a request its author signed without them.
fn require_signed(parts: &Parts, signed_headers: &str) -> Result<(), S3Error> {
    let signed = |name: &str| signed_headers.split(';').any(|s| s == name);
    if !signed("host") {
        return Err(S3Error::AccessDenied("the host header must be signed"));
    }
    let unsigned = parts
        .headers
        .keys()
        .any(|name| name.as_str().starts_with("x-amz-") && !signed(name.as_str()));
    if unsigned {
        return Err(S3Error::AccessDenied(
            "There were headers present in the request which were not signed",
        ));
    }
    Ok(())
}

fn verify(expected: &str, given: &str) -> Result<(), S3Error> {
    if bool::from(expected.as_bytes().ct_eq(given.trim().as_bytes())) {
        Ok(())
    } else {
        Err(S3Error::SignatureDoesNotMatch)
    }
}

/// How a body is protected, as an `x-amz-content-sha256` value says.
pub(super) fn parse_payload(value: &str) -> Result<Payload, S3Error> {
    Ok(match value {
        "UNSIGNED-PAYLOAD" => Payload::Unsigned,
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER" => Payload::Chunked {
            signed: false,
            trailer: true,
        },
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD" => Payload::Chunked {
            signed: true,
            trailer: false,
        },
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER" => Payload::Chunked {
            signed: true,
            trailer: true,
        },
        hash if hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Payload::Sha256(hash.to_ascii_lowercase())
        }
        _ => {
            return Err(S3Error::InvalidArgument(
                "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, a STREAMING-* value or a SHA-256"
                    .into(),
            ))
        }
    })
}

fn parse_amz_date(value: &str) -> Result<DateTime<Utc>, S3Error> {
    // Exactly `yyyymmddThhmmssZ`: chrono alone also takes shorter numbers with whitespace before
    // them, and the scope's date is cut from the first 8 bytes (which could split a character).
    let well_formed = value.len() == 16
        && value.bytes().enumerate().all(|(i, b)| match i {
            8 => b == b'T',
            15 => b == b'Z',
            _ => b.is_ascii_digit(),
        });
    if !well_formed {
        return Err(S3Error::AccessDenied("x-amz-date is not a valid date"));
    }
    NaiveDateTime::parse_from_str(value, "%Y%m%dT%H%M%SZ")
        .map(|d| d.and_utc())
        .map_err(|_| S3Error::AccessDenied("x-amz-date is not a valid date"))
}

fn canonical_request(
    parts: &Parts,
    query: &[(String, String)],
    signed_headers: &str,
    payload_hash: &str,
    presigned: bool,
) -> String {
    let path_bytes: Vec<u8> = percent_decode_str(parts.uri.path()).collect();
    let path = percent_encoding::percent_encode(&path_bytes, PATH).to_string();
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .filter(|(k, _)| !(presigned && k == "X-Amz-Signature"))
        .map(|(k, v)| {
            (
                utf8_percent_encode(k, STRICT).to_string(),
                utf8_percent_encode(v, STRICT).to_string(),
            )
        })
        .collect();
    pairs.sort();
    // Written into one string as it goes: it is built for every request, and a string for each
    // header value, then one for their list, were allocations on every request.
    let mut canonical = String::with_capacity(256);
    canonical.push_str(parts.method.as_str());
    canonical.push('\n');
    canonical.push_str(&path);
    canonical.push('\n');
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            canonical.push('&');
        }
        canonical.push_str(k);
        canonical.push('=');
        canonical.push_str(v);
    }
    canonical.push('\n');
    for name in signed_headers.split(';') {
        canonical.push_str(name);
        canonical.push(':');
        if name == "host" && parts.headers.get("host").is_none() {
            if let Some(authority) = parts.uri.authority() {
                canonical.push_str(authority.as_str());
            }
        } else {
            for (i, value) in parts.headers.get_all(name).iter().enumerate() {
                if i > 0 {
                    canonical.push(',');
                }
                push_folded(&mut canonical, &String::from_utf8_lossy(value.as_bytes()));
            }
        }
        canonical.push('\n');
    }
    canonical.push('\n');
    canonical.push_str(signed_headers);
    canonical.push('\n');
    canonical.push_str(payload_hash);
    canonical
}

/// `text` trimmed, with each run of whitespace in it made one space, as a header value goes into
/// a canonical request.
fn push_folded(out: &mut String, text: &str) {
    for (i, word) in text.split_whitespace().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(word);
    }
}

fn signature_of(key: &[u8; 32], amz_date: &str, scope: &str, canonical: &str) -> String {
    let to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    hex::encode(hmac(key, to_sign.as_bytes()))
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::auth::EMPTY_SHA256;

    fn creds() -> Credentials {
        // The example key pair of the AWS SigV4 documentation.
        Credentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            region: "us-east-1".into(),
        }
    }

    #[test]
    fn documented_example_signature() {
        // GET /test.txt with a Range header, from the AWS S3 SigV4 documentation.
        let req = http::Request::get("https://examplebucket.s3.amazonaws.com/test.txt")
            .header("host", "examplebucket.s3.amazonaws.com")
            .header("range", "bytes=0-9")
            .header("x-amz-content-sha256", EMPTY_SHA256)
            .header("x-amz-date", "20130524T000000Z")
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        let canonical = canonical_request(
            &parts,
            &[],
            "host;range;x-amz-content-sha256;x-amz-date",
            EMPTY_SHA256,
            false,
        );
        let key = creds().signing_key("20130524");
        assert_eq!(
            signature_of(
                &key,
                "20130524T000000Z",
                "20130524/us-east-1/s3/aws4_request",
                &canonical
            ),
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn canonical_requests_sort_the_query_and_fold_header_values() {
        let req = http::Request::get("http://examplebucket.s3.amazonaws.com/a%20b/c~d")
            .header("x-amz-meta-list", "one   two ")
            .header("x-amz-meta-list", "\tthree")
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        let query = [("b", "2"), ("a", "1"), ("c", "x y"), ("a", "0")]
            .map(|(k, v)| (k.to_string(), v.to_string()));
        assert_eq!(
            canonical_request(
                &parts,
                &query,
                "host;x-amz-meta-list",
                "UNSIGNED-PAYLOAD",
                false
            ),
            "GET\n/a%20b/c~d\na=0&a=1&b=2&c=x%20y\n\
             host:examplebucket.s3.amazonaws.com\nx-amz-meta-list:one two,three\n\n\
             host;x-amz-meta-list\nUNSIGNED-PAYLOAD"
        );
    }

    #[test]
    fn signing_keys_kept_are_those_of_the_same_secret_day_and_region() {
        let secrets = ["wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "another secret"];
        for round in 0..2 {
            for secret in secrets {
                for date in ["20130524", "20130525"] {
                    for region in ["us-east-1", "eu-west-1"] {
                        let creds = Credentials {
                            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
                            secret_access_key: secret.into(),
                            region: region.into(),
                        };
                        let fresh = derive_signing_key(secret, date, region);
                        assert_eq!(creds.signing_key(date), fresh, "round {round}");
                    }
                }
            }
        }
        // More keys than are kept: the oldest go, and each is derived again when asked for.
        for n in 0..=SIGNING_KEYS_KEPT {
            let creds = Credentials {
                secret_access_key: format!("secret {n}"),
                ..creds()
            };
            assert_eq!(
                creds.signing_key("20130524"),
                derive_signing_key(&creds.secret_access_key, "20130524", "us-east-1")
            );
        }
        let kept = SIGNING_KEYS.lock().unwrap().len();
        assert!(kept <= SIGNING_KEYS_KEPT, "{kept} kept");
    }

    /// Checks `parts` as `Credentials::authenticate` checks a SigV4 presigned URL.
    fn presigned(parts: &Parts) -> Result<Authenticated, S3Error> {
        creds().check_presigned(parts, &Query::parse(parts.uri.query().unwrap_or("")).0)
    }

    #[test]
    fn dates_must_be_exactly_formatted() {
        assert!(parse_amz_date("20130524T000000Z").is_ok());
        for bad in [
            "2013 5 24T000000Z",
            "20130524T000000",
            "2013052\u{3000}4T0000Z",
            "+2013052T000000Z",
        ] {
            assert!(parse_amz_date(bad).is_err(), "{bad}");
        }
        // A presigned URL whose date had a wide space where the scope's date is cut from it
        // (byte 8) panicked there (`202612\u{3000}02T...` parsed as a date).
        let now = Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        let odd = format!("{}%E3%80%80{}", &now[..6], &now[6..]);
        let uri = format!(
            "/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F{}%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date={odd}&X-Amz-Expires=600&X-Amz-SignedHeaders=host&X-Amz-Signature=00",
            &now[..8]
        );
        let (parts, ()) = http::Request::get(uri).body(()).unwrap().into_parts();
        assert!(matches!(presigned(&parts), Err(S3Error::AccessDenied(_))));
    }

    fn parts_with(headers: &[(&str, &str)]) -> Parts {
        let mut req = http::Request::put("/b/k");
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        req.body(()).unwrap().into_parts().0
    }

    #[test]
    fn host_and_every_amz_header_must_be_signed() {
        let parts = parts_with(&[
            ("host", "h"),
            ("x-amz-date", "20130524T000000Z"),
            ("x-amz-meta-added", "later"),
            ("content-type", "text/plain"),
        ]);
        assert!(require_signed(&parts, "host;x-amz-date;x-amz-meta-added").is_ok());
        assert!(matches!(
            require_signed(&parts, "host;x-amz-date"),
            Err(S3Error::AccessDenied(_))
        ));
        assert!(matches!(
            require_signed(&parts, "x-amz-date;x-amz-meta-added"),
            Err(S3Error::AccessDenied(_))
        ));
    }

    /// A request for `uri` whose query has been through `hoist_query_headers`.
    fn hoisted(uri: &str, headers: &[(&str, &str)]) -> Result<(Parts, Query), S3Error> {
        let mut parts = parts_with(headers);
        parts.uri = uri.parse().unwrap();
        let mut query = Query::parse(parts.uri.query().unwrap_or(""));
        hoist_query_headers(&mut parts, &mut query).map(|()| (parts, query))
    }

    #[test]
    fn a_presigned_urls_amz_parameters_become_headers() {
        let (parts, query) = hoisted(
            "/b/k?X-Amz-Content-Sha256=UNSIGNED-PAYLOAD&X-Amz-Signature=00\
             &x-amz-sdk-checksum-algorithm=CRC32&X-Amz-Checksum-Crc32=AAAAAA%3D%3D&x-id=PutObject",
            &[],
        )
        .unwrap();
        assert_eq!(header(&parts, "x-amz-checksum-crc32"), Some("AAAAAA=="));
        assert_eq!(
            header(&parts, "x-amz-sdk-checksum-algorithm"),
            Some("CRC32")
        );
        let left: Vec<&str> = query.0.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(left, ["X-Amz-Content-Sha256", "X-Amz-Signature", "x-id"]);
    }

    #[test]
    fn a_hoisted_parameter_may_not_repeat_or_frame_the_body() {
        let (parts, _) = hoisted(
            "/b/k?x-amz-checksum-mode=ENABLED&content-type=a%2Fb",
            &[("x-amz-checksum-mode", "ENABLED")],
        )
        .unwrap();
        assert_eq!(header(&parts, "content-type"), Some("a/b"));
        assert!(matches!(
            hoisted(
                "/b/k?x-amz-checksum-mode=ENABLED",
                &[("x-amz-checksum-mode", "DISABLED")]
            ),
            Err(S3Error::InvalidRequest(_))
        ));
        assert!(matches!(
            hoisted("/b/k?x-amz-meta-a=1&x-amz-meta-a=2", &[]),
            Err(S3Error::InvalidRequest(_))
        ));
        assert!(matches!(
            hoisted("/b/k?x-amz-trailer=x-amz-checksum-crc32", &[]),
            Err(S3Error::NotImplemented(_))
        ));
        assert!(matches!(
            hoisted("/b/k?x-amz-meta-a=%0A", &[]),
            Err(S3Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn presigned_urls_valid_longer_than_a_week_are_a_query_parameters_error() {
        let now = Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        let uri = format!(
            "/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F{}%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date={now}&X-Amz-Expires=604801&X-Amz-SignedHeaders=host&X-Amz-Signature=00",
            &now[..8]
        );
        let (parts, ()) = http::Request::get(uri)
            .header("host", "h")
            .body(())
            .unwrap()
            .into_parts();
        let Err(err) = presigned(&parts) else {
            panic!("a presigned URL valid for more than a week was accepted");
        };
        assert_eq!(err.code(), "AuthorizationQueryParametersError");
    }
}
