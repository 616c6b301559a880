//! Picks the S3 operation a request asks for: the bucket and key it addresses (path or
//! virtual-hosted style), then the handler by method and sub-resource.

use crate::api::access::{Caller, Principal};
use crate::api::scrape::RequestLabel;
use crate::api::*;
use crate::s3::error::S3Error;
use crate::s3::http::{header, Query};
use crate::s3::response::{S3Response, RESPONSE_OVERRIDES};
use crate::s3::signature::{anonymous, claimed_key, is_anonymous, strip_signature_params};
use crate::s3::sigv4::hoist_query_headers;
use http::request::Parts;
use http::Method;
use hyper::body::Incoming;
use percent_encoding::percent_decode_str;
use std::net::IpAddr;

/// S3 keys are at most this many bytes.
const MAX_KEY_LEN: usize = 1024;

impl Gateway {
    /// The bucket and key a request addresses: virtual-hosted style when its `Host` is
    /// `<bucket>.<root_domain>`, path style otherwise.
    pub(super) fn locate(
        &self,
        parts: &Parts,
    ) -> Result<(Option<String>, Option<String>), S3Error> {
        match self.virtual_bucket(parts) {
            Some(bucket) => {
                let key = parts.uri.path().strip_prefix('/').unwrap_or("");
                Ok((Some(bucket), decode_key(key)?))
            }
            None => split_path(parts.uri.path()),
        }
    }

    fn virtual_bucket(&self, parts: &Parts) -> Option<String> {
        let root = self.config.root_domain.as_deref()?.trim_matches('.');
        let host = header(parts, "host").or_else(|| parts.uri.host())?;
        let host = match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        }
        .to_ascii_lowercase();
        let bucket = host
            .strip_suffix(&root.to_ascii_lowercase())?
            .strip_suffix('.')?;
        (!bucket.is_empty()).then(|| bucket.to_string())
    }

    pub(super) async fn dispatch(
        &self,
        mut parts: Parts,
        body: Incoming,
        location: Result<(Option<String>, Option<String>), S3Error>,
        client_ip: Option<IpAddr>,
        label: &mut RequestLabel,
    ) -> Result<S3Response, S3Error> {
        if self.config.connections.headers_too_large(&parts.headers) {
            return Err(S3Error::RequestHeaderSectionTooLarge);
        }
        if parts.method == Method::OPTIONS {
            *label = RequestLabel::Preflight;
            // CORS preflight: browsers send it without credentials, and S3 answers from the rules.
            let (bucket, _) = location?;
            return crate::api::cors::preflight(self, bucket.as_deref(), &parts.headers).await;
        }
        if post_object::is_form_upload(&parts) {
            // A browser upload: the form's fields carry the signature, over its policy.
            *label = RequestLabel::PostObject;
            return match location? {
                (Some(bucket), None) => {
                    post_object::post_object(self, &bucket, parts, body, client_ip).await
                }
                _ => Err(S3Error::MethodNotAllowed),
            };
        }
        let (auth, principal) = if is_anonymous(&parts) {
            (anonymous(&parts)?, Principal::Anonymous)
        } else {
            let (credentials, principal) =
                self.credentials_for(claimed_key(&parts).as_deref()).await?;
            let virtual_bucket = self.virtual_bucket(&parts);
            let auth = credentials.authenticate(&parts, virtual_bucket.as_deref())?;
            (auth, principal)
        };
        let mut query = Query::parse(parts.uri.query().unwrap_or(""));
        if auth.presigned {
            strip_signature_params(&mut query);
            hoist_query_headers(&mut parts, &mut query)?;
        }
        let (bucket, key) = location?;
        let req = S3Request {
            parts,
            query,
            body,
            auth,
            caller: Caller {
                principal,
                ip: client_ip,
            },
            body_stall: self.config.connections.stall_timeout(),
        };
        if bucket.as_deref() == Some(crate::api::admin::PREFIX) {
            *label = RequestLabel::Admin;
            if key.is_none() && req.parts.method == Method::PUT {
                // Creating a bucket of the admin API's name: the name is what is wrong.
                return Err(S3Error::InvalidBucketName);
            }
            if req.parts.method == Method::POST {
                match key.as_deref() {
                    Some(crate::api::replica::BUCKETS_PATH) => {
                        return crate::api::replica::apply_buckets(self, req).await
                    }
                    Some(crate::api::replica::KEYS_PATH) => {
                        return crate::api::replica::apply_keys(self, req).await
                    }
                    _ => {}
                }
            }
            if !req.caller.principal.is_admin() {
                return Err(S3Error::AccessDenied(
                    "the admin API is for the configured key",
                ));
            }
            return crate::api::admin::handle(self, req, key.as_deref()).await;
        }
        let operation = Operation::of(&req.parts, &req.query, bucket.is_some(), key.is_some());
        if let Some(op) = operation {
            *label = RequestLabel::S3(op);
        }
        self.authorize(&req, operation, bucket.as_deref(), key.as_deref())
            .await?;
        unsupported::check(operation, &req.parts, &req.query)?;
        let method = req.parts.method.clone();
        let q = |name| req.query.has(name);
        match (bucket, key) {
            (None, _) if method == Method::GET => bucket::list_buckets(self, &req).await,
            (None, _) => Err(S3Error::MethodNotAllowed),
            (Some(bucket), None) => match method {
                Method::PUT if req.parts.uri.query().is_none() => {
                    bucket::create_bucket(self, &bucket, req).await
                }
                Method::HEAD => bucket::head_bucket(self, &bucket).await,
                Method::DELETE if req.parts.uri.query().is_none() => {
                    bucket::delete_bucket(self, &bucket).await
                }
                Method::PUT if q("tagging") => {
                    tagging::put_bucket_tagging(self, &bucket, req).await
                }
                Method::GET if q("tagging") => tagging::get_bucket_tagging(self, &bucket).await,
                Method::DELETE if q("tagging") => {
                    tagging::delete_bucket_tagging(self, &bucket).await
                }
                Method::PUT if q("cors") => cors::put_bucket_cors(self, &bucket, req).await,
                Method::GET if q("cors") => cors::get_bucket_cors(self, &bucket).await,
                Method::DELETE if q("cors") => cors::delete_bucket_cors(self, &bucket).await,
                Method::PUT if q("replication") => {
                    replication::put_replication(self, &bucket, req).await
                }
                Method::GET if q("replication") => {
                    replication::get_replication(self, &bucket).await
                }
                Method::DELETE if q("replication") => {
                    replication::delete_replication(self, &bucket).await
                }
                Method::POST if q("delete") => {
                    multi_delete::delete_objects(self, &bucket, req).await
                }
                Method::GET if q("location") => bucket::location(self, &bucket).await,
                Method::GET if q("versioning") => versioning::get_versioning(self, &bucket).await,
                Method::PUT if q("versioning") => {
                    versioning::put_versioning(self, &bucket, req).await
                }
                Method::PUT if q("lifecycle") => lifecycle::put_lifecycle(self, &bucket, req).await,
                Method::GET if q("lifecycle") => lifecycle::get_lifecycle(self, &bucket).await,
                Method::DELETE if q("lifecycle") => {
                    lifecycle::delete_lifecycle(self, &bucket).await
                }
                Method::PUT if q("encryption") => {
                    encryption::put_bucket_encryption(self, &bucket, req).await
                }
                Method::GET if q("encryption") => {
                    encryption::get_bucket_encryption(self, &bucket).await
                }
                Method::DELETE if q("encryption") => {
                    encryption::delete_bucket_encryption(self, &bucket).await
                }
                Method::PUT if q("object-lock") => {
                    object_lock::put_configuration(self, &bucket, req).await
                }
                Method::GET if q("object-lock") => {
                    object_lock::get_configuration(self, &bucket).await
                }
                Method::PUT if q("policy") => policy::put_policy(self, &bucket, req).await,
                Method::GET if q("policy") => policy::get_policy(self, &bucket).await,
                Method::DELETE if q("policy") => policy::delete_policy(self, &bucket).await,
                Method::GET if q("policyStatus") => policy::get_status(self, &bucket).await,
                Method::GET if q("notification") => bucket::notification(self, &bucket).await,
                Method::GET if q("acl") => acl::get_bucket_acl(self, &bucket).await,
                Method::PUT if q("acl") => acl::put_bucket_acl(self, &bucket, req).await,
                Method::GET if q("ownershipControls") => {
                    acl::get_ownership_controls(self, &bucket).await
                }
                Method::PUT if q("ownershipControls") => {
                    acl::put_ownership_controls(self, &bucket, req).await
                }
                Method::DELETE if q("ownershipControls") => {
                    acl::delete_ownership_controls(self, &bucket).await
                }
                Method::GET if q("versions") => {
                    versioning::list_object_versions(self, &bucket, &req).await
                }
                Method::GET if q("uploads") => multipart::list_uploads(self, &bucket, req).await,
                Method::GET if is_listing(&req.query) => {
                    listing::list_objects(self, &bucket, &req.query).await
                }
                _ => Err(S3Error::NotImplemented("This bucket operation")),
            },
            (Some(bucket), Some(key)) => {
                let upload = req.query.get("uploadId").map(str::to_string);
                let copy = req.header("x-amz-copy-source").is_some();
                match (method, upload) {
                    (Method::PUT, Some(upload)) if q("partNumber") && copy => {
                        copy::upload_part_copy(self, &bucket, &key, &upload, req).await
                    }
                    (Method::PUT, Some(upload)) if q("partNumber") => {
                        multipart::upload_part(self, &bucket, &key, &upload, req).await
                    }
                    (Method::PUT, None) if q("tagging") => {
                        tagging::put_object_tagging(self, &bucket, &key, req).await
                    }
                    (Method::GET, None) if q("tagging") => {
                        tagging::get_object_tagging(self, &bucket, &key, req).await
                    }
                    (Method::DELETE, None) if q("tagging") => {
                        tagging::delete_object_tagging(self, &bucket, &key, req).await
                    }
                    (Method::GET, None) if q("attributes") => {
                        attributes::get_object_attributes(self, &bucket, &key, req).await
                    }
                    (Method::PUT, None) if q("retention") => {
                        object_lock::put_retention(self, &bucket, &key, req).await
                    }
                    (Method::GET, None) if q("retention") => {
                        object_lock::get_retention(self, &bucket, &key, req).await
                    }
                    (Method::PUT, None) if q("legal-hold") => {
                        object_lock::put_legal_hold(self, &bucket, &key, req).await
                    }
                    (Method::GET, None) if q("legal-hold") => {
                        object_lock::get_legal_hold(self, &bucket, &key, req).await
                    }
                    (Method::GET, None) if q("acl") => {
                        acl::get_object_acl(self, &bucket, &key, req).await
                    }
                    (Method::PUT, None) if q("acl") => {
                        acl::put_object_acl(self, &bucket, &key, req).await
                    }
                    (Method::PUT | Method::GET | Method::HEAD | Method::DELETE, None)
                        if sub_resource(&req.query, &req.parts.method) =>
                    {
                        Err(S3Error::NotImplemented("This object operation"))
                    }
                    (Method::PUT, None) if copy => {
                        copy::copy_object(self, &bucket, &key, req).await
                    }
                    (Method::PUT, None) => object::put_object(self, &bucket, &key, req).await,
                    (Method::GET, Some(upload)) => {
                        multipart::list_parts(self, &bucket, &key, &upload, &req).await
                    }
                    (Method::GET, None) => {
                        object::get_object(self, &bucket, &key, req, false).await
                    }
                    (Method::HEAD, None) => {
                        object::get_object(self, &bucket, &key, req, true).await
                    }
                    (Method::DELETE, Some(upload)) => {
                        multipart::abort(self, &bucket, &key, &upload).await
                    }
                    (Method::DELETE, None) => object::delete_object(self, &bucket, &key, req).await,
                    (Method::POST, None) if q("uploads") => {
                        multipart::create(self, &bucket, &key, req).await
                    }
                    (Method::POST, Some(upload)) => {
                        multipart::complete(self, &bucket, &key, &upload, req).await
                    }
                    _ => Err(S3Error::MethodNotAllowed),
                }
            }
        }
    }
}

/// True when a bucket GET is a plain listing rather than a sub-resource we do not serve.
fn is_listing(query: &Query) -> bool {
    const LISTING: [&str; 9] = [
        "list-type",
        "prefix",
        "delimiter",
        "max-keys",
        "continuation-token",
        "start-after",
        "encoding-type",
        "fetch-owner",
        "marker",
    ];
    query.0.iter().all(|(k, _)| LISTING.contains(&k.as_str()))
}

/// Object sub-resources (`?acl`, ...) and parameters that this gateway does not implement.
/// The `response-*` overrides belong to GET and HEAD: on a write or delete they would be
/// accepted and ignored.
fn sub_resource(query: &Query, method: &Method) -> bool {
    let reads = matches!(*method, Method::GET | Method::HEAD);
    let known = |k: &str| {
        k.starts_with("X-Amz-")
            || matches!(k, "partNumber" | "versionId" | "x-id")
            || (reads && RESPONSE_OVERRIDES.iter().any(|(param, _)| *param == k))
    };
    query.0.iter().any(|(k, _)| !known(k))
}

/// `/bucket/key...` into its decoded parts; the key may hold any UTF-8, including `/` runs.
fn split_path(path: &str) -> Result<(Option<String>, Option<String>), S3Error> {
    let path = path.strip_prefix('/').unwrap_or(path);
    let (bucket, key) = match path.split_once('/') {
        Some((b, k)) => (b, k),
        None => (path, ""),
    };
    if bucket.is_empty() {
        return Ok((None, None));
    }
    let key = decode_key(key)?;
    Ok((Some(decode_path(bucket)?), key))
}

/// A path segment, percent-decoded; it must be UTF-8.
fn decode_path(s: &str) -> Result<String, S3Error> {
    percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| S3Error::InvalidUri)
}

/// A key as it appears in the path (still encoded); `None` when empty.
fn decode_key(raw: &str) -> Result<Option<String>, S3Error> {
    if raw.is_empty() {
        return Ok(None);
    }
    let key = decode_path(raw)?;
    if key.len() > MAX_KEY_LEN {
        return Err(S3Error::KeyTooLongError);
    }
    Ok(Some(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_bucket_and_key() {
        assert_eq!(split_path("/").unwrap(), (None, None));
        assert_eq!(split_path("/b").unwrap(), (Some("b".into()), None));
        assert_eq!(split_path("/b/").unwrap(), (Some("b".into()), None));
        assert_eq!(
            split_path("/b/a%20b//c%2B").unwrap(),
            (Some("b".into()), Some("a b//c+".into()))
        );
        assert!(split_path("/b/%FF").is_err());
        assert!(matches!(
            split_path(&format!("/b/{}", "k".repeat(1025))),
            Err(S3Error::KeyTooLongError)
        ));
    }

    #[test]
    fn response_overrides_are_only_for_reads() {
        let query = Query::parse("response-content-type=text%2Fplain&versionId=null");
        assert!(!sub_resource(&query, &Method::GET));
        assert!(!sub_resource(&query, &Method::HEAD));
        assert!(sub_resource(&query, &Method::PUT));
        assert!(sub_resource(&query, &Method::DELETE));
        assert!(sub_resource(&Query::parse("acl"), &Method::GET));
        assert!(sub_resource(&Query::parse("response-foo=1"), &Method::GET));
    }
}
