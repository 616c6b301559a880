//! Forwards the page's API calls to the gateway, signed with the session's key: `/api/s3/P` is
//! the S3 request `/P`, `/api/admin/P` the admin API's `/_tessera/P`. Bodies stream through
//! unless they are small (`HASHED_BODY_LIMIT`), which are hashed into the signature and given a
//! `Content-MD5` (S3 wants one on bucket settings and multi-object deletes).

use crate::session::Session;
use crate::sign::{self, Credentials};
use crate::{error, full, Body, Settings, Upstream};
use base64::Engine as _;
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use md5::Md5;
use sha2::{Digest, Sha256};
use std::net::IpAddr;

/// Bodies up to this size are read whole and signed; larger ones stream as `UNSIGNED-PAYLOAD`.
const HASHED_BODY_LIMIT: u64 = 1 << 20;
/// The `Host` the console's requests carry: not a name virtual-hosted-style addressing matches.
const UPSTREAM_HOST: &str = "localhost";

/// Request headers the page may set on a forwarded call, besides `Content-MD5` and every
/// `x-amz-*` one but those the signature itself sets. Anything else (cookies above all, and the
/// browser's own headers) stays in the console.
const FORWARDED_HEADERS: [HeaderName; 12] = [
    header::CONTENT_TYPE,
    header::CONTENT_LENGTH,
    header::CONTENT_DISPOSITION,
    header::CONTENT_ENCODING,
    header::CONTENT_LANGUAGE,
    header::CACHE_CONTROL,
    header::EXPIRES,
    header::RANGE,
    header::IF_MATCH,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_UNMODIFIED_SINCE,
];

pub async fn forward<B>(
    upstream: &dyn Upstream,
    settings: &Settings,
    session: &Session,
    req: Request<B>,
    client: Option<IpAddr>,
) -> Response<Body>
where
    B: http_body::Body<Data = Bytes> + Send + Sync + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let path = req.uri().path();
    let target = if let Some(rest) = path.strip_prefix("/api/s3/") {
        format!("/{rest}")
    } else if let Some(rest) = path.strip_prefix("/api/admin/") {
        format!("/_tessera/{rest}")
    } else {
        return error(StatusCode::NOT_FOUND, "No such console API.");
    };
    let mut uri = sign::canonical_path(&target);
    let query = sign::canonical_query(req.uri().query().unwrap_or(""));
    if !query.is_empty() {
        uri = format!("{uri}?{query}");
    }
    let Ok(uri) = uri.parse::<Uri>() else {
        return error(StatusCode::BAD_REQUEST, "The path cannot be forwarded.");
    };
    let (parts, body) = req.into_parts();
    let mut out = Request::new(());
    *out.method_mut() = parts.method.clone();
    *out.uri_mut() = uri;
    let headers = out.headers_mut();
    headers.insert(header::HOST, HeaderValue::from_static(UPSTREAM_HOST));
    for (name, value) in &parts.headers {
        let amz = name.as_str().starts_with("x-amz-")
            && !matches!(
                name.as_str(),
                "x-amz-date" | "x-amz-content-sha256" | "x-amz-security-token"
            );
        if amz || name.as_str() == "content-md5" || FORWARDED_HEADERS.contains(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    let length = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let (mut out, ()) = out.into_parts();
    let body: Body = if length.is_none_or(|n| n <= HASHED_BODY_LIMIT) {
        let bytes = match Limited::new(body, HASHED_BODY_LIMIT as usize)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("The request body could not be read: {e}"),
                )
            }
        };
        if !bytes.is_empty() && !out.headers.contains_key("content-md5") {
            let md5 = base64::engine::general_purpose::STANDARD.encode(Md5::digest(&bytes));
            out.headers.insert(
                HeaderName::from_static("content-md5"),
                HeaderValue::from_str(&md5).expect("base64 is ASCII"),
            );
        }
        let hash = hex::encode(Sha256::digest(&bytes));
        sign::sign(
            &mut out,
            &session.credentials,
            &settings.region,
            &hash,
            chrono::Utc::now(),
        );
        full(bytes)
    } else {
        sign::sign(
            &mut out,
            &session.credentials,
            &settings.region,
            "UNSIGNED-PAYLOAD",
            chrono::Utc::now(),
        );
        body.map_err(|e| std::io::Error::other(e.into())).boxed()
    };
    match send(upstream, client, Request::from_parts(out, body)).await {
        Ok(response) => relay(response),
        Err(message) => error(StatusCode::BAD_GATEWAY, &message),
    }
}

/// Whether the gateway knows `credentials`: `Ok(false)` when it refuses them.
pub async fn check(
    upstream: &dyn Upstream,
    settings: &Settings,
    credentials: &Credentials,
    client: Option<IpAddr>,
) -> Result<bool, String> {
    let (mut parts, ()) = Request::get("/")
        .header(header::HOST, UPSTREAM_HOST)
        .body(())
        .expect("a valid request")
        .into_parts();
    let empty = hex::encode(Sha256::digest(b""));
    sign::sign(
        &mut parts,
        credentials,
        &settings.region,
        &empty,
        chrono::Utc::now(),
    );
    let body = Empty::new().map_err(|never| match never {}).boxed();
    let response = send(upstream, client, Request::from_parts(parts, body)).await?;
    match response.status() {
        StatusCode::OK => Ok(true),
        StatusCode::FORBIDDEN => Ok(false),
        status => Err(format!(
            "The gateway answered the login check with {status}."
        )),
    }
}

async fn send(
    upstream: &dyn Upstream,
    client: Option<IpAddr>,
    req: Request<Body>,
) -> Result<Response<Incoming>, String> {
    let stream = upstream.connect(client);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("The gateway could not be reached: {e}"))?;
    tokio::spawn(connection);
    let method = req.method().clone();
    sender
        .send_request(req)
        .await
        .map_err(|e| format!("The gateway did not answer the {method}: {e}"))
}

/// The gateway's answer as the browser gets it. Object bodies are served under a sandboxing
/// Content-Security-Policy: an HTML object opened from the console runs no script with the
/// console's origin.
fn relay(response: Response<Incoming>) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    parts.headers.remove(header::CONNECTION);
    parts.headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'"),
    );
    let body = body.map_err(std::io::Error::other).boxed();
    Response::from_parts(parts, body)
}
