//! AWS Signature Version 2, which S3 still accepts and SDKs still send: boto3 presigns with it
//! by default against a custom endpoint in `us-east-1`. Header (`Authorization: AWS id:sig`) and
//! query (`AWSAccessKeyId`, `Signature`, `Expires`) forms. The signature is the base64 HMAC-SHA1
//! of:
//!
//! ```text
//! METHOD\nContent-MD5\nContent-Type\nDate (or Expires)\n[x-amz-name:value\n...]/bucket/key[?sub-resources]
//! ```
//!
//! The body is not signed (Content-MD5 may protect it). The resource is the path as sent, with the
//! bucket in front for virtual-hosted requests, and only the sub-resources listed in
//! `SUB_RESOURCES` (botocore's list, values decoded, `=` only before a value), sorted.

use crate::s3::auth::{Authenticated, Credentials, Payload};
use crate::s3::error::S3Error;
use crate::s3::http::{header, Query};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use http::request::Parts;
use subtle::ConstantTimeEq;

/// The query parameters that make a SigV2 presigned URL's signature.
pub const QUERY_PARAMS: [&str; 3] = ["AWSAccessKeyId", "Signature", "Expires"];

/// Query parameters that are part of the signed resource (botocore's `QSAOfInterest`).
const SUB_RESOURCES: [&str; 35] = [
    "accelerate",
    "acl",
    "analytics",
    "cors",
    "defaultObjectAcl",
    "delete",
    "inventory",
    "lifecycle",
    "location",
    "logging",
    "metrics",
    "notification",
    "object-lock",
    "partNumber",
    "policy",
    "replication",
    "requestPayment",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "restore",
    "select",
    "select-type",
    "storageClass",
    "tagging",
    "torrent",
    "uploadId",
    "uploads",
    "versionId",
    "versioning",
    "versions",
    "website",
];

const MAX_SKEW_SECS: i64 = 15 * 60;

/// How a SigV2 request carries its signature.
pub enum Form<'a> {
    Header {
        access_key: &'a str,
        signature: &'a str,
    },
    Query,
}

/// The SigV2 signature a request carries, if it carries one.
pub fn form<'a>(parts: &'a Parts, query: &Query) -> Option<Form<'a>> {
    if let Some(auth) = header(parts, "authorization") {
        let (access_key, signature) = auth.strip_prefix("AWS ")?.split_once(':')?;
        return Some(Form::Header {
            access_key: access_key.trim(),
            signature: signature.trim(),
        });
    }
    (query.has("Signature") && query.has("AWSAccessKeyId")).then_some(Form::Query)
}

/// The access key id a SigV2 request names.
pub fn claimed_key(parts: &Parts) -> Option<String> {
    let query = Query::parse(parts.uri.query().unwrap_or(""));
    match form(parts, &query)? {
        Form::Header { access_key, .. } => Some(access_key.to_string()),
        Form::Query => query.get("AWSAccessKeyId").map(str::to_string),
    }
}

impl Credentials {
    /// Checks a SigV2 request; `virtual_bucket` is the bucket its host names, if any.
    pub fn check_v2(
        &self,
        parts: &Parts,
        query: &Query,
        virtual_bucket: Option<&str>,
    ) -> Result<Authenticated, S3Error> {
        let form = form(parts, query).ok_or(S3Error::AccessDenied("no signature"))?;
        let (access_key, signature, date) = match form {
            Form::Header {
                access_key,
                signature,
            } => {
                let when = header(parts, "x-amz-date")
                    .or_else(|| header(parts, "date"))
                    .ok_or(S3Error::AccessDenied(
                        "AWS authentication requires a valid Date or x-amz-date header",
                    ))
                    .and_then(parse_http_date)?;
                if (Utc::now() - when).num_seconds().abs() > MAX_SKEW_SECS {
                    return Err(S3Error::RequestTimeTooSkewed);
                }
                // With x-amz-date, which is signed among the x-amz headers, the Date line is empty.
                let date = match header(parts, "x-amz-date") {
                    Some(_) => "",
                    None => header(parts, "date").unwrap_or(""),
                };
                (access_key, signature, date)
            }
            Form::Query => {
                let get = |name| query.get(name).unwrap_or("");
                let expires: i64 = get("Expires").parse().map_err(|_| {
                    S3Error::AccessDenied("Query-string authentication requires Expires")
                })?;
                if Utc::now().timestamp() > expires {
                    return Err(S3Error::AccessDenied("Request has expired"));
                }
                (get("AWSAccessKeyId"), get("Signature"), get("Expires"))
            }
        };
        if !bool::from(access_key.as_bytes().ct_eq(self.access_key_id.as_bytes())) {
            return Err(S3Error::InvalidAccessKeyId);
        }
        // A bucket's own resource is `/bucket/` to botocore, `/bucket` (the path as sent) to
        // rclone: both name the same resource, so either signature is taken.
        let matches = |to_sign: String| {
            let mut mac = Hmac::<sha1::Sha1>::new_from_slice(self.secret_access_key.as_bytes())
                .expect("HMAC takes keys of any length");
            mac.update(to_sign.as_bytes());
            let expected = BASE64.encode(mac.finalize().into_bytes());
            bool::from(expected.as_bytes().ct_eq(signature.as_bytes()))
        };
        let resource = resource(parts, virtual_bucket);
        let mut ok = matches(string_to_sign(parts, query, date, &resource));
        if let Some(bare) = resource.strip_suffix('/').filter(|r| r.len() > 1 && !ok) {
            ok = matches(string_to_sign(parts, query, date, bare));
        }
        if !ok {
            return Err(S3Error::SignatureDoesNotMatch);
        }
        Ok(Authenticated {
            payload: Payload::Unsigned,
            chunk_signer: None,
            presigned: matches!(form, Form::Query),
        })
    }
}

/// What a SigV2 signature signs. In the query form, Content-MD5, Content-Type and `x-amz-*` may
/// be given as parameters instead of headers (botocore's presigner puts them there); a header
/// of the same name is what counts (`hoist_query_headers` then requires the two to agree).
fn string_to_sign(parts: &Parts, query: &Query, date: &str, resource: &str) -> String {
    let value = |name: &str| {
        header(parts, name)
            .or_else(|| query.get(name))
            .unwrap_or("")
            .trim()
            .to_string()
    };
    let mut amz: Vec<(String, Vec<String>)> = Vec::new();
    let mut add = |name: &str, value: &str| {
        let name = name.to_ascii_lowercase();
        match amz.iter_mut().find(|(n, _)| *n == name) {
            Some((_, values)) => values.push(value.trim().to_string()),
            None => amz.push((name, vec![value.trim().to_string()])),
        }
    };
    for (name, v) in &parts.headers {
        if name.as_str().starts_with("x-amz-") {
            add(name.as_str(), &String::from_utf8_lossy(v.as_bytes()));
        }
    }
    for (name, v) in &query.0 {
        let amz = name
            .get(..6)
            .is_some_and(|p| p.eq_ignore_ascii_case("x-amz-"));
        if amz && header(parts, &name.to_ascii_lowercase()).is_none() {
            add(name, v);
        }
    }
    amz.sort();
    let mut out = format!(
        "{}\n{}\n{}\n{date}\n",
        parts.method,
        value("content-md5"),
        value("content-type")
    );
    for (name, values) in amz {
        out.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    out.push_str(resource);
    let mut sub: Vec<(&str, &str)> = query
        .0
        .iter()
        .filter(|(k, _)| SUB_RESOURCES.contains(&k.as_str()))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    sub.sort_by(|a, b| a.0.cmp(b.0));
    for (i, (name, v)) in sub.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(name);
        // `?uploads` and `?uploads=` are both signed as `uploads` (botocore and Go clients).
        if !v.is_empty() {
            out.push('=');
            out.push_str(v);
        }
    }
    out
}

/// The path of the resource signed: the bucket in front for virtual-hosted requests, and a bucket's
/// own resource as `/bucket/`.
fn resource(parts: &Parts, virtual_bucket: Option<&str>) -> String {
    let path = parts.uri.path();
    match virtual_bucket {
        Some(bucket) => format!("/{bucket}{path}"),
        None if path.len() > 1 && !path[1..].contains('/') => format!("{path}/"),
        None => path.to_string(),
    }
}

/// An HTTP date (`Tue, 27 Mar 2007 19:36:42 +0000`, or with `GMT`, or `UTC` as Go's RFC 1123
/// format writes it: rclone), or ISO 8601 basic as SigV4 writes it.
fn parse_http_date(value: &str) -> Result<DateTime<Utc>, S3Error> {
    let value = value.trim();
    let rfc2822 = match value.strip_suffix(" UTC") {
        Some(rest) => format!("{rest} GMT"),
        None => value.to_string(),
    };
    DateTime::parse_from_rfc2822(&rfc2822)
        .map(|d| d.with_timezone(&Utc))
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(value, "%Y%m%dT%H%M%SZ").map(|d| d.and_utc())
        })
        .map_err(|_| S3Error::AccessDenied("the request's date is not valid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::s3::http::request_head as request;

    #[test]
    fn the_string_to_sign_follows_the_documented_examples() {
        // AWS's "Object GET" and "Upload" examples of the RESTAuthentication documentation.
        let (parts, query) = request("GET", "/awsexamplebucket1/photos/puppy.jpg", &[]);
        assert_eq!(
            string_to_sign(
                &parts,
                &query,
                "Tue, 27 Mar 2007 19:36:42 +0000",
                &resource(&parts, None)
            ),
            "GET\n\n\nTue, 27 Mar 2007 19:36:42 +0000\n/awsexamplebucket1/photos/puppy.jpg"
        );
        let (parts, query) = request(
            "PUT",
            "/db-backup.dat.gz",
            &[
                ("content-type", "application/x-download"),
                ("content-md5", "4gJE4saaMU4BqNR0kLY+lw=="),
                ("x-amz-meta-reviewedby", "joe@example.com"),
                ("x-amz-meta-reviewedby", "jane@example.com"),
                ("x-amz-meta-filechecksum", "0x02661779"),
                ("x-amz-date", "Tue, 27 Mar 2007 21:06:08 +0000"),
            ],
        );
        assert_eq!(
            string_to_sign(
                &parts,
                &query,
                "",
                &resource(&parts, Some("static.example.com"))
            ),
            "PUT\n4gJE4saaMU4BqNR0kLY+lw==\napplication/x-download\n\n\
             x-amz-date:Tue, 27 Mar 2007 21:06:08 +0000\n\
             x-amz-meta-filechecksum:0x02661779\n\
             x-amz-meta-reviewedby:joe@example.com,jane@example.com\n\
             /static.example.com/db-backup.dat.gz"
        );
    }

    #[test]
    fn a_bucket_is_signed_with_a_slash_after_it() {
        let (parts, query) = request("GET", "/b?encoding-type=url", &[]);
        assert_eq!(
            string_to_sign(&parts, &query, "1", &resource(&parts, None)),
            "GET\n\n\n1\n/b/"
        );
        let (parts, query) = request("GET", "/?location", &[]);
        assert_eq!(
            string_to_sign(&parts, &query, "1", &resource(&parts, Some("b"))),
            "GET\n\n\n1\n/b/?location"
        );
        let (parts, query) = request("GET", "/", &[]);
        assert_eq!(
            string_to_sign(&parts, &query, "1", &resource(&parts, None)),
            "GET\n\n\n1\n/"
        );
    }

    #[test]
    fn only_sub_resources_are_signed_sorted_and_decoded() {
        let (parts, query) = request("GET", "/b/k?versionId=a%2Bb&uploads&max-keys=3&acl", &[]);
        assert_eq!(
            string_to_sign(&parts, &query, "1", &resource(&parts, None)),
            "GET\n\n\n1\n/b/k?acl&uploads&versionId=a+b"
        );
    }

    fn signed(secret: &str, to_sign: &str) -> String {
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(to_sign.as_bytes());
        BASE64.encode(mac.finalize().into_bytes())
    }

    fn credentials() -> Credentials {
        Credentials {
            access_key_id: "AKID".into(),
            secret_access_key: "secret".into(),
            region: "us-east-1".into(),
        }
    }

    #[test]
    fn presigned_urls_expire_and_their_signature_is_checked() {
        let expires = (Utc::now().timestamp() + 60).to_string();
        let signature = signed("secret", &format!("GET\n\n\n{expires}\n/b/k"));
        let uri = |signature: &str, expires: &str| {
            format!(
                "/b/k?AWSAccessKeyId=AKID&Expires={expires}&Signature={}",
                percent_encoding::utf8_percent_encode(
                    signature,
                    percent_encoding::NON_ALPHANUMERIC
                )
            )
        };
        let check = |uri: String| {
            let (parts, query) = request("GET", &uri, &[]);
            credentials().check_v2(&parts, &query, None)
        };
        let ok = check(uri(&signature, &expires)).unwrap();
        assert!(ok.presigned && ok.payload == Payload::Unsigned);
        assert!(matches!(
            check(uri("AAAA", &expires)),
            Err(S3Error::SignatureDoesNotMatch)
        ));
        let past = (Utc::now().timestamp() - 1).to_string();
        let old = signed("secret", &format!("GET\n\n\n{past}\n/b/k"));
        assert!(matches!(
            check(uri(&old, &past)),
            Err(S3Error::AccessDenied("Request has expired"))
        ));
    }

    #[test]
    fn header_signatures_need_a_date_near_now() {
        let now = Utc::now().to_rfc2822();
        let signature = signed("secret", &format!("DELETE\n\n\n{now}\n/b/k"));
        let check = |date: &str, signature: &str| {
            let auth = format!("AWS AKID:{signature}");
            let (parts, query) = request(
                "DELETE",
                "/b/k",
                &[("date", date), ("authorization", &auth)],
            );
            credentials().check_v2(&parts, &query, None)
        };
        assert!(check(&now, &signature).is_ok());
        let old = (Utc::now() - chrono::Duration::minutes(20)).to_rfc2822();
        let old_signature = signed("secret", &format!("DELETE\n\n\n{old}\n/b/k"));
        assert!(matches!(
            check(&old, &old_signature),
            Err(S3Error::RequestTimeTooSkewed)
        ));
        assert!(matches!(
            check("yesterday", &signature),
            Err(S3Error::AccessDenied(_))
        ));
    }

    #[test]
    fn dates_come_in_several_forms() {
        for date in [
            "Tue, 27 Mar 2007 19:36:42 +0000",
            "Tue, 27 Mar 2007 19:36:42 GMT",
            "Tue, 27 Mar 2007 19:36:42 UTC",
            "20070327T193642Z",
        ] {
            assert_eq!(
                parse_http_date(date).unwrap().timestamp(),
                1175024202,
                "{date}"
            );
        }
    }
}
