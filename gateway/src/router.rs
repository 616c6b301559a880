//! The gateway's request handling: authenticate, pick the S3 operation, turn errors into S3 XML.

use crate::checksum::{Algorithm, Expected};
use crate::cluster::Cluster;
use crate::config::GatewayConfig;
use crate::error::S3Error;
use crate::http_util::{header, Query};
use crate::payload::PayloadReader;
use crate::sigv4::{parse_query, Authenticated, Credentials};
use crate::xml::XmlWriter;
use crate::{
    buckets, copy, cors, lifecycle, multi_delete, multipart, objects, tagging, versioning,
};
use bytes::{Bytes, BytesMut};
use erasure::Codec;
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use percent_encoding::percent_decode_str;
use std::sync::Arc;
use storage_node::body::{empty, full, HttpBody};
use storage_node::ClusterConfig;

/// S3 keys are at most this many bytes.
const MAX_KEY_LEN: usize = 1024;

pub type S3Response = Response<HttpBody>;

/// One S3 gateway: the cluster it writes to, its codec and the credentials it accepts.
pub struct Gateway {
    pub cluster: Arc<Cluster>,
    /// The cluster's k+m: multipart uploads and objects above `replicate_threshold`.
    pub codec: Codec,
    /// One data shard and k+m-1 parity ones, which are copies of it: objects up to
    /// `replicate_threshold`.
    copies: Codec,
    pub config: GatewayConfig,
    pub healer: Arc<crate::heal::Healer>,
    credentials: Credentials,
}

/// What a handler gets: the request head, its decoded query and its authenticated body.
pub struct S3Request {
    pub parts: Parts,
    pub query: Query,
    pub body: Incoming,
    pub auth: Authenticated,
}

impl S3Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.parts, name)
    }

    /// The content length the client declared (the decoded length for `aws-chunked` bodies).
    pub fn content_length(&self) -> Result<u64, S3Error> {
        let name = if self.header("x-amz-decoded-content-length").is_some() {
            "x-amz-decoded-content-length"
        } else {
            "content-length"
        };
        match self.header(name) {
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| S3Error::InvalidArgument(format!("bad {name}"))),
            None if self
                .parts
                .headers
                .contains_key(http::header::TRANSFER_ENCODING) =>
            {
                Err(S3Error::MissingContentLength)
            }
            None => Ok(0),
        }
    }

    /// What the client claimed about the body: Content-MD5 and at most one S3 checksum.
    pub fn expected_digests(&self) -> Result<Expected, S3Error> {
        let checksum = if let Some(trailer) = self.header("x-amz-trailer") {
            let algorithm = Algorithm::from_header(trailer.trim())
                .ok_or_else(|| S3Error::InvalidRequest(format!("unsupported trailer {trailer}")))?;
            Some((algorithm, None))
        } else {
            Algorithm::ALL.into_iter().find_map(|a| {
                self.header(&a.header())
                    .map(|v| (a, Some(v.trim().to_string())))
            })
        };
        Expected::new(self.header("content-md5"), checksum)
    }

    /// Reads a small body (XML) whole, checking its length, signature and digests.
    pub async fn read_small_body(self, limit: u64) -> Result<Bytes, S3Error> {
        let expected = self.expected_digests()?;
        self.read_small_body_against(limit, expected).await
    }

    /// Reads a small body whole, checking its length, signature and the digests given (for
    /// requests whose `x-amz-checksum-*` headers are about something else than the body).
    pub async fn read_small_body_against(
        self,
        limit: u64,
        expected: Expected,
    ) -> Result<Bytes, S3Error> {
        let len = self.content_length()?;
        if len > limit {
            return Err(S3Error::EntityTooLarge);
        }
        let mut reader = PayloadReader::new(self.body, self.auth, len);
        let mut digests = crate::checksum::Digests::new(expected.checksum.as_ref().map(|c| c.0));
        let mut out = BytesMut::new();
        while let Some(chunk) = reader.next().await? {
            digests.update(&chunk).await;
            out.extend_from_slice(&chunk);
        }
        let trailer = expected
            .checksum
            .as_ref()
            .and_then(|(a, _)| reader.trailer(&a.header()));
        digests.verify(&expected, trailer).await?;
        Ok(out.freeze())
    }
}

impl Gateway {
    pub fn new(config: GatewayConfig, cluster: &ClusterConfig) -> anyhow::Result<Gateway> {
        let credentials = Credentials {
            access_key_id: config.access_key_id.clone(),
            secret_access_key: config.secret_access_key.0.clone(),
            region: config.region.clone(),
        };
        let mut nodes = Cluster::new(cluster)?;
        nodes.small_copies = config.replicate_threshold > 0;
        let width = cluster.data_shards + cluster.parity_shards;
        Ok(Gateway {
            cluster: Arc::new(nodes),
            codec: Codec::shared(cluster.data_shards, cluster.parity_shards)?,
            copies: Codec::shared(1, width - 1)?,
            config,
            healer: Arc::default(),
            credentials,
        })
    }

    /// The codec a new single-part object of `size` bytes is written with (with a threshold of 0,
    /// empty objects too are erasure-coded).
    pub fn codec_for(&self, size: u64) -> &Codec {
        if self.cluster.small_copies && size <= self.config.replicate_threshold {
            &self.copies
        } else {
            &self.codec
        }
    }

    pub async fn handle(&self, req: Request<Incoming>) -> S3Response {
        let request_id = format!("{:016X}", rand::random::<u64>());
        let is_head = req.method() == Method::HEAD;
        let resource = req.uri().path().to_string();
        let (expect, has_body) = body_signals(&req);
        let cors = req
            .headers()
            .get(http::header::ORIGIN)
            .and_then(|o| o.to_str().ok())
            .filter(|_| req.method() != Method::OPTIONS)
            .map(|o| (o.to_string(), req.method().to_string()));
        let (parts, body) = req.into_parts();
        let location = self.locate(&parts);
        let bucket = location.as_ref().ok().and_then(|(b, _)| b.clone());
        let mut response = match self.dispatch(parts, body, location).await {
            Ok(r) => r,
            Err(e) => {
                if e.status().is_server_error() {
                    tracing::warn!(code = e.code(), error = %e, %resource, "request failed");
                }
                error_response(&e, &resource, &request_id, is_head)
            }
        };
        if let (Some((origin, method)), Some(bucket)) = (cors, &bucket) {
            crate::cors::decorate(self, bucket, &origin, &method, &mut response).await;
        }
        if let Ok(v) = request_id.parse() {
            response.headers_mut().insert("x-amz-request-id", v);
        }
        // botocore (boto3, aws CLI v1) mis-parses the next response on a connection where it sent
        // `Expect: 100-continue` and got a final answer without `100 Continue` (hyper sends that
        // only once the body is read), then stalls for its 60 s read timeout. And a request
        // refused before its body was read leaves the rest of the body in the connection. Closing
        // such connections keeps either state from being reused.
        if (expect && !has_body) || (has_body && !response.status().is_success()) {
            response.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
        }
        response
    }

    /// The bucket and key a request addresses: virtual-hosted style when its `Host` is
    /// `<bucket>.<root_domain>`, path style otherwise.
    fn locate(&self, parts: &Parts) -> Result<(Option<String>, Option<String>), S3Error> {
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

    async fn dispatch(
        &self,
        parts: Parts,
        body: Incoming,
        location: Result<(Option<String>, Option<String>), S3Error>,
    ) -> Result<S3Response, S3Error> {
        if parts.method == Method::OPTIONS {
            // CORS preflight: browsers send it without credentials, and S3 answers from the rules.
            let (bucket, _) = location?;
            return crate::cors::preflight(self, bucket.as_deref(), &parts.headers).await;
        }
        let auth = self.credentials.authenticate(&parts)?;
        let query = Query(parse_query(parts.uri.query().unwrap_or("")));
        let (bucket, key) = location?;
        let req = S3Request {
            parts,
            query,
            body,
            auth,
        };
        if bucket.as_deref() == Some(crate::admin::PREFIX) {
            return crate::admin::handle(self, req, key.as_deref()).await;
        }
        let method = req.parts.method.clone();
        let q = |name| req.query.has(name);
        match (bucket, key) {
            (None, _) if method == Method::GET => buckets::list_buckets(self).await,
            (None, _) => Err(S3Error::MethodNotAllowed),
            (Some(bucket), None) => match method {
                Method::PUT if req.parts.uri.query().is_none() => {
                    buckets::create_bucket(self, &bucket, req).await
                }
                Method::HEAD => buckets::head_bucket(self, &bucket).await,
                Method::DELETE if req.parts.uri.query().is_none() => {
                    buckets::delete_bucket(self, &bucket).await
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
                Method::POST if q("delete") => {
                    multi_delete::delete_objects(self, &bucket, req).await
                }
                Method::GET if q("location") => buckets::location(self, &bucket).await,
                Method::GET if q("versioning") => versioning::get_versioning(self, &bucket).await,
                Method::PUT if q("versioning") => {
                    versioning::put_versioning(self, &bucket, req).await
                }
                Method::PUT if q("lifecycle") => lifecycle::put_lifecycle(self, &bucket, req).await,
                Method::GET if q("lifecycle") => lifecycle::get_lifecycle(self, &bucket).await,
                Method::DELETE if q("lifecycle") => {
                    lifecycle::delete_lifecycle(self, &bucket).await
                }
                Method::GET if q("versions") => {
                    versioning::list_object_versions(self, &bucket, &req).await
                }
                Method::GET if q("uploads") => multipart::list_uploads(self, &bucket, req).await,
                Method::GET if is_listing(&req.query) => {
                    buckets::list_objects(self, &bucket, &req.query).await
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
                    (Method::PUT | Method::GET | Method::HEAD | Method::DELETE, None)
                        if sub_resource(&req.query) =>
                    {
                        Err(S3Error::NotImplemented("This object operation"))
                    }
                    (Method::PUT, None) if copy => {
                        copy::copy_object(self, &bucket, &key, req).await
                    }
                    (Method::PUT, None) => objects::put_object(self, &bucket, &key, req).await,
                    (Method::GET, Some(upload)) => {
                        multipart::list_parts(self, &bucket, &key, &upload, &req.query).await
                    }
                    (Method::GET, None) => {
                        objects::get_object(self, &bucket, &key, req, false).await
                    }
                    (Method::HEAD, None) => {
                        objects::get_object(self, &bucket, &key, req, true).await
                    }
                    (Method::DELETE, Some(upload)) => {
                        multipart::abort(self, &bucket, &key, &upload).await
                    }
                    (Method::DELETE, None) => {
                        objects::delete_object(self, &bucket, &key, req).await
                    }
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

/// Whether a request asks for `100 Continue`, and whether it has a body.
fn body_signals(req: &Request<Incoming>) -> (bool, bool) {
    let headers = req.headers();
    let expect = headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let has_body = headers.contains_key(http::header::TRANSFER_ENCODING)
        || headers
            .get(http::header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    (expect, has_body)
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

/// Object sub-resources (`?acl`, `?tagging`, ...) that this gateway does not implement.
fn sub_resource(query: &Query) -> bool {
    query.0.iter().any(|(k, _)| {
        !k.starts_with("response-")
            && !k.starts_with("X-Amz-")
            && !matches!(k.as_str(), "partNumber" | "versionId" | "x-id")
    })
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
    Ok((Some(decode(bucket)?), key))
}

fn decode(s: &str) -> Result<String, S3Error> {
    percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| S3Error::InvalidArgument("the key is not valid UTF-8".into()))
}

/// A key as it appears in the path (still encoded); `None` when empty.
fn decode_key(raw: &str) -> Result<Option<String>, S3Error> {
    if raw.is_empty() {
        return Ok(None);
    }
    let key = decode(raw)?;
    if key.len() > MAX_KEY_LEN {
        return Err(S3Error::KeyTooLongError);
    }
    Ok(Some(key))
}

pub fn error_response(e: &S3Error, resource: &str, request_id: &str, is_head: bool) -> S3Response {
    let mut builder = Response::builder().status(e.status());
    for (name, value) in e.headers() {
        builder = builder.header(name, value);
    }
    if is_head {
        return builder
            .body(empty())
            .expect("static response parts are valid");
    }
    let mut xml = XmlWriter::bare("Error");
    xml.elem("Code", e.code())
        .elem("Message", e.to_string())
        .elem("Resource", resource)
        .elem("RequestId", request_id);
    builder
        .header(http::header::CONTENT_TYPE, "application/xml")
        .body(full(xml.finish()))
        .expect("static response parts are valid")
}

pub fn xml_response(xml: XmlWriter) -> S3Response {
    Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, "application/xml")
        .body(full(xml.finish()))
        .expect("static response parts are valid")
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
}
