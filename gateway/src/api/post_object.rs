//! POST Object: a browser (an HTML form, or a web app) uploads straight to a bucket with a
//! `multipart/form-data` body whose fields carry the key, the object's headers and a policy
//! document signed with the access key's secret (SigV4 or SigV2) instead of a signed request.
//!
//! The fields come first (`s3::post_form`), the policy and its signature are checked on them
//! (`s3::post_policy`, `Credentials::check_post_policy`), and the file then streams into the write
//! path exactly as a PUT body of known length would.

use crate::api::access::{Caller, Principal};
use crate::api::object::kept_headers;
use crate::api::unsupported::Operation;
use crate::api::Gateway;
use crate::ops::error::OpError;
use crate::ops::write::{write_object, NewObject};
use crate::s3::auth::{Authenticated, Payload};
use crate::s3::checksum::{Algorithm, Expected};
use crate::s3::error::S3Error;
use crate::s3::http::header;
use crate::s3::payload::PayloadReader;
use crate::s3::post_form::{self, Form};
use crate::s3::post_policy::Policy;
use crate::s3::response::{xml_response, Finish, S3Response};
use crate::s3::sigv4::PostSignature;
use crate::s3::xml::XmlWriter;
use chrono::Utc;
use http::request::Parts;
use http::{Response, StatusCode};
use hyper::body::Incoming;
use node_rpc::body::empty;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use std::net::IpAddr;

/// Fields the handler reads (with the `x-amz-meta-*`, `x-amz-checksum-*` and `x-ignore-*`
/// families); any other field is refused rather than ignored.
const KNOWN_FIELDS: &[&str] = &[
    "key",
    "policy",
    "x-amz-algorithm",
    "x-amz-credential",
    "x-amz-date",
    "x-amz-signature",
    "awsaccesskeyid",
    "signature",
    "acl",
    "success_action_status",
    "success_action_redirect",
    "redirect",
    "tagging",
    "x-amz-storage-class",
    "x-amz-checksum-algorithm",
    "content-type",
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "expires",
];

/// Whether a request is a browser upload: a POST to a bucket with a form body, no sub-resource.
pub fn is_form_upload(parts: &Parts) -> bool {
    parts.method == http::Method::POST
        && parts.uri.query().is_none_or(str::is_empty)
        && header(parts, "content-type").is_some_and(|t| post_form::boundary(t).is_some())
}

pub async fn post_object(
    gw: &Gateway,
    bucket: &str,
    parts: Parts,
    body: Incoming,
    client_ip: Option<IpAddr>,
) -> Result<S3Response, S3Error> {
    let boundary = header(&parts, "content-type")
        .and_then(post_form::boundary)
        .ok_or(S3Error::MalformedPostRequest)?;
    let content_length: u64 = header(&parts, "content-length")
        .ok_or(S3Error::MissingContentLength)?
        .trim()
        .parse()
        .map_err(|_| S3Error::InvalidArgument("bad content-length".into()))?;
    let stall = gw.config.connections.stall_timeout();
    let (form, file, size) = post_form::read(body, &boundary, content_length, stall).await?;
    let key = object_key(&form)?;
    let caller = Caller {
        principal: authenticate(gw, &form).await?,
        ip: client_ip,
    };
    let policy = Policy::parse(form.field("policy").unwrap_or_default())?;
    let range = policy.check(&form.fields, bucket, Utc::now())?;
    check_fields(&form)?;
    match range {
        Some((min, _)) if size < min => return Err(S3Error::EntityTooSmall),
        Some((_, max)) if size > max => return Err(S3Error::EntityTooLarge),
        _ if size > crate::api::object::MAX_PUT_SIZE => return Err(S3Error::EntityTooLarge),
        _ => {}
    }
    let bucket = gw.cluster.bucket(bucket).await?;
    caller.check(&bucket, Operation::PutObject, Some(&key))?;
    let headers = kept_headers(form.fields.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
    if headers
        .iter()
        .any(|(_, v)| http::HeaderValue::from_str(v).is_err())
    {
        return Err(S3Error::InvalidArgument(
            "a header field holds characters a header cannot".into(),
        ));
    }
    let tags = match form.field("tagging") {
        Some(xml) => crate::api::tagging::parse(xml.as_bytes(), 10)?,
        None => Vec::new(),
    };
    let expected = expected_checksum(&form)?;
    let unsigned = Authenticated {
        payload: Payload::Unsigned,
        chunk_signer: None,
        presigned: false,
    };
    let mut payload = PayloadReader::with_body(file, unsigned, size, Some(stall));
    let written = write_object(
        &gw.cluster,
        &bucket,
        &key,
        NewObject {
            size,
            headers,
            tags,
            lock: Default::default(),
            sse: crate::api::encryption::bucket_default(gw, &bucket)?,
            acl: crate::api::acl::for_new_object(gw, &bucket, &caller, &canned_acl(&form)?).await?,
            replica: None,
        },
        &mut payload,
        &expected,
        None,
    )
    .await
    .map_err(|e| match e {
        OpError::Request(S3Error::IncompleteBody) => S3Error::MalformedPostRequest,
        e => e.into(),
    })?;
    let etag = format!("\"{}\"", written.etag);
    let location = format!("/{}/{}", bucket.name, encode(&key));
    let mut response = crate::api::encryption::with_headers(
        Response::builder().header(http::header::ETAG, &etag),
        written.encryption.as_ref(),
    );
    if let Some(id) = &written.version_id {
        response = response.header("x-amz-version-id", id);
    }
    if let Some(redirect) = form
        .field("success_action_redirect")
        .or(form.field("redirect"))
        .filter(|r| r.starts_with("http://") || r.starts_with("https://"))
    {
        let separator = if redirect.contains('?') { '&' } else { '?' };
        let target = format!(
            "{redirect}{separator}bucket={}&key={}&etag={}",
            encode(&bucket.name),
            encode(&key),
            encode(&etag)
        );
        return response
            .status(StatusCode::SEE_OTHER)
            .header(http::header::LOCATION, target)
            .finish(empty());
    }
    match form.field("success_action_status") {
        Some("201") => {
            let mut xml = XmlWriter::new("PostResponse");
            xml.elem("Location", &location)
                .elem("Bucket", &bucket.name)
                .elem("Key", &key)
                .elem("ETag", &etag);
            let mut created = xml_response(xml);
            *created.status_mut() = StatusCode::CREATED;
            let headers = created.headers_mut();
            headers.insert(http::header::ETAG, etag.parse().expect("an ETag is ASCII"));
            if let Some(id) = written.version_id.and_then(|id| id.parse().ok()) {
                headers.insert("x-amz-version-id", id);
            }
            if let Ok(location) = location.parse() {
                headers.insert(http::header::LOCATION, location);
            }
            Ok(created)
        }
        Some("200") => response.status(StatusCode::OK).finish(empty()),
        _ => response
            .status(StatusCode::NO_CONTENT)
            .header(http::header::LOCATION, &location)
            .finish(empty()),
    }
}

fn encode(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

/// The form's signature (SigV4 or SigV2) over its policy; a form without both is anonymous,
/// which needs a bucket that allows it, and Tessera has none.
async fn authenticate(gw: &Gateway, form: &Form) -> Result<Principal, S3Error> {
    let policy = form.field("policy");
    let signature = match (form.field("x-amz-signature"), form.field("signature")) {
        (Some(signature), _) => {
            if form.field("x-amz-algorithm") != Some("AWS4-HMAC-SHA256") {
                return Err(S3Error::InvalidArgument(
                    "x-amz-algorithm must be AWS4-HMAC-SHA256".into(),
                ));
            }
            let field = |name: &str| {
                form.field(name).ok_or_else(|| {
                    S3Error::InvalidArgument(format!(
                        "Bucket POST must contain a field named '{name}'."
                    ))
                })
            };
            PostSignature::V4 {
                credential: field("x-amz-credential")?,
                amz_date: field("x-amz-date")?,
                signature,
            }
        }
        (None, Some(signature)) => PostSignature::V2 {
            access_key: form.field("awsaccesskeyid").ok_or_else(|| {
                S3Error::InvalidArgument(
                    "Bucket POST must contain a field named 'AWSAccessKeyId'.".into(),
                )
            })?,
            signature,
        },
        (None, None) => return Err(S3Error::AccessDenied("anonymous requests are not allowed")),
    };
    let policy = policy.ok_or_else(|| {
        S3Error::InvalidArgument("Bucket POST must contain a field named 'policy'.".into())
    })?;
    let (credentials, principal) = gw.credentials_for(signature.access_key()).await?;
    credentials.check_post_policy(policy, signature)?;
    Ok(principal)
}

/// The form's `acl` field as the `x-amz-acl` header a PUT would carry.
fn canned_acl(form: &Form) -> Result<http::HeaderMap, S3Error> {
    let mut headers = http::HeaderMap::new();
    if let Some(acl) = form.field("acl") {
        let value = http::HeaderValue::from_str(acl)
            .map_err(|_| S3Error::InvalidArgument(format!("Invalid canned ACL: {acl}")))?;
        headers.insert("x-amz-acl", value);
    }
    Ok(headers)
}

/// Refuses fields Tessera does not implement, or implements only with some values.
fn check_fields(form: &Form) -> Result<(), S3Error> {
    for (name, value) in &form.fields {
        let family = name.starts_with("x-amz-meta-")
            || name.starts_with("x-ignore-")
            || (name.starts_with("x-amz-checksum-") && checksum_algorithm(name).is_some());
        if !family && !KNOWN_FIELDS.contains(&name.as_str()) {
            return Err(S3Error::NotImplemented(
                "A POST form field other than those of S3's POST Object that Tessera implements",
            ));
        }
        match name.as_str() {
            "x-amz-storage-class" if value != "STANDARD" => {
                return Err(S3Error::NotImplemented(
                    "A storage class other than STANDARD",
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

/// The algorithm an `x-amz-checksum-<algorithm>` field name names.
fn checksum_algorithm(name: &str) -> Option<Algorithm> {
    Algorithm::ALL.into_iter().find(|a| a.header() == name)
}

/// The checksum a form asks the file to have (`x-amz-checksum-<algorithm>`), at most one.
fn expected_checksum(form: &Form) -> Result<Expected, S3Error> {
    let mut given = form
        .fields
        .iter()
        .filter_map(|(name, value)| Some((checksum_algorithm(name)?, value.clone())));
    let checksum = given.next();
    if given.next().is_some() {
        return Err(S3Error::InvalidRequest(
            "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."
                .into(),
        ));
    }
    if let (Some(named), Some((algorithm, _))) = (form.field("x-amz-checksum-algorithm"), &checksum)
    {
        if !named.eq_ignore_ascii_case(algorithm.name()) {
            return Err(S3Error::InvalidRequest(
                "x-amz-checksum-algorithm does not name the checksum field sent".into(),
            ));
        }
    }
    Expected::new(None, checksum.map(|(a, v)| (a, Some(v))))
}

/// The key field, with `${filename}` replaced by the file's name, as S3 does.
fn object_key(form: &Form) -> Result<String, S3Error> {
    let key = form.field("key").ok_or_else(|| {
        S3Error::InvalidArgument(
            "Bucket POST must contain a field named 'key'.  If it is specified, please check the order of the fields.".into(),
        )
    })?;
    let key = key.replace("${filename}", form.file_name.as_deref().unwrap_or(""));
    if key.is_empty() {
        return Err(S3Error::InvalidArgument(
            "User key must have a length greater than 0.".into(),
        ));
    }
    if key.len() > 1024 {
        return Err(S3Error::KeyTooLongError);
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(fields: &[(&str, &str)], file_name: Option<&str>) -> Form {
        Form {
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            file_name: file_name.map(str::to_string),
        }
    }

    #[test]
    fn keys_take_the_file_name() {
        let f = form(&[("key", "up/${filename}")], Some("a b.txt"));
        assert_eq!(object_key(&f).unwrap(), "up/a b.txt");
        assert!(object_key(&form(&[], None)).is_err());
        assert!(object_key(&form(&[("key", "${filename}")], None)).is_err());
    }

    #[test]
    fn fields_tessera_lacks_are_refused() {
        assert!(check_fields(&form(
            &[("key", "k"), ("x-amz-meta-a", "1"), ("x-ignore-z", "")],
            None
        ))
        .is_ok());
        for field in [
            ("x-amz-server-side-encryption", "AES256"),
            ("x-amz-storage-class", "GLACIER"),
            ("x-amz-security-token", "t"),
            ("x-amz-checksum-sha512", "x"),
        ] {
            assert!(
                matches!(
                    check_fields(&form(&[field], None)),
                    Err(S3Error::NotImplemented(_))
                ),
                "{field:?}"
            );
        }
    }

    #[test]
    fn one_checksum_at_most() {
        let crc = "AAAAAA==";
        assert!(
            expected_checksum(&form(&[("x-amz-checksum-crc32", crc)], None))
                .unwrap()
                .checksum
                .is_some()
        );
        assert!(expected_checksum(&form(
            &[
                ("x-amz-checksum-crc32", crc),
                ("x-amz-checksum-crc32c", crc)
            ],
            None
        ))
        .is_err());
        assert!(expected_checksum(&form(
            &[
                ("x-amz-checksum-crc32", crc),
                ("x-amz-checksum-algorithm", "SHA256")
            ],
            None
        ))
        .is_err());
    }
}
