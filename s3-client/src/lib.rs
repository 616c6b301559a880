//! A small S3 client: AWS Signature Version 4 in the Authorization header, over hyper's pooled
//! keep-alive client, http or https (rustls; an extra CA file, or no verification at all).
//!
//! Used by `tessera bench`, the admin CLI, the integration tests, and a region's gateways to send
//! their versions to a peer region (request bodies streamed). Paths are given as S3 clients send them:
//! already percent-encoded, with the query (if any) after `?`.

use anyhow::Context;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{connect::HttpConnector, Client as HyperClient};
use hyper_util::rt::TokioExecutor;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Everything but RFC 3986's unreserved characters is encoded in query values.
const STRICT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// Object keys keep their slashes.
const KEY: &AsciiSet = &STRICT.remove(b'/');

/// Where and how to connect.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// `http://host:port` or `https://host:port`.
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
    /// PEM file of CA certificates trusted besides the built-in web roots.
    pub ca_file: Option<PathBuf>,
    /// Accept any server certificate (testing only).
    pub insecure: bool,
}

impl ClientConfig {
    pub fn new(endpoint: &str, access_key: &str, secret_key: &str) -> ClientConfig {
        ClientConfig {
            endpoint: endpoint.into(),
            access_key: access_key.into(),
            secret_key: secret_key.into(),
            region: "us-east-1".into(),
            ca_file: None,
            insecure: false,
        }
    }
}

/// How a request body is covered by the signature.
#[derive(Clone, Copy, Debug)]
pub enum BodySigning {
    /// x-amz-content-sha256 is the body's SHA-256.
    Hashed,
    /// x-amz-content-sha256 is this literal value (UNSIGNED-PAYLOAD, STREAMING-...).
    Literal(&'static str),
}

impl BodySigning {
    pub const UNSIGNED: BodySigning = BodySigning::Literal("UNSIGNED-PAYLOAD");
}

/// An S3 answer with its whole body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `<Code>` of an S3 error body.
    pub fn code(&self) -> String {
        xml_values(&self.text(), "Code")
            .next()
            .unwrap_or_default()
            .to_string()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// The text of every `<tag>...</tag>` in `xml`, in order (no entity decoding).
pub fn xml_values<'a>(xml: &'a str, tag: &str) -> std::vec::IntoIter<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    xml.split(open.as_str())
        .skip(1)
        .filter_map(|s| s.split(close.as_str()).next())
        .collect::<Vec<_>>()
        .into_iter()
}

/// One page of ListObjectsV2.
#[derive(Debug)]
pub struct ListPage {
    pub status: u16,
    pub keys: Vec<String>,
    pub next_token: Option<String>,
    pub reply: Reply,
}

/// A request body: whole, or streamed (`Client::stream`).
pub type Body = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

type Http = HyperClient<HttpsConnector<HttpConnector>, Body>;

/// Cheap to clone: the connection pool is shared.
#[derive(Clone)]
pub struct Client {
    endpoint: String,
    host: String,
    config: Arc<ClientConfig>,
    http: Http,
}

impl Client {
    pub fn new(config: ClientConfig) -> anyhow::Result<Client> {
        let endpoint = config.endpoint.trim_end_matches('/').to_string();
        let uri: hyper::Uri = endpoint
            .parse()
            .with_context(|| format!("endpoint {endpoint:?}"))?;
        let host = uri
            .authority()
            .with_context(|| format!("endpoint {endpoint:?} has no host"))?
            .to_string();
        anyhow::ensure!(
            matches!(uri.scheme_str(), Some("http" | "https")),
            "endpoint {endpoint:?} must start with http:// or https://"
        );
        let tls = tls_config(&config)?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let http = HyperClient::builder(TokioExecutor::new())
            .pool_max_idle_per_host(usize::MAX)
            .build(connector);
        Ok(Client {
            endpoint,
            host,
            config: Arc::new(config),
            http,
        })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    pub async fn create_bucket(&self, bucket: &str) -> anyhow::Result<Reply> {
        self.send("PUT", &object_path(bucket, ""), &[], Bytes::new())
            .await
    }

    pub async fn put(&self, bucket: &str, key: &str, body: Bytes) -> anyhow::Result<Reply> {
        self.send_signed(
            "PUT",
            &object_path(bucket, key),
            &[],
            body,
            BodySigning::Hashed,
        )
        .await
    }

    pub async fn get(&self, bucket: &str, key: &str) -> anyhow::Result<Reply> {
        self.send("GET", &object_path(bucket, key), &[], Bytes::new())
            .await
    }

    pub async fn head(&self, bucket: &str, key: &str) -> anyhow::Result<Reply> {
        self.send("HEAD", &object_path(bucket, key), &[], Bytes::new())
            .await
    }

    pub async fn delete(&self, bucket: &str, key: &str) -> anyhow::Result<Reply> {
        self.send("DELETE", &object_path(bucket, key), &[], Bytes::new())
            .await
    }

    /// One ListObjectsV2 page.
    pub async fn list_v2(
        &self,
        bucket: &str,
        prefix: &str,
        continuation: Option<&str>,
        max_keys: u32,
    ) -> anyhow::Result<ListPage> {
        let mut path = format!(
            "{}?list-type=2&max-keys={max_keys}&prefix={}",
            object_path(bucket, ""),
            utf8_percent_encode(prefix, STRICT)
        );
        if let Some(token) = continuation {
            path.push_str("&continuation-token=");
            path.extend(utf8_percent_encode(token, STRICT));
        }
        let reply = self.send("GET", &path, &[], Bytes::new()).await?;
        let text = reply.text();
        let keys = xml_values(&text, "Key").map(unescape_xml).collect();
        let truncated = xml_values(&text, "IsTruncated").next() == Some("true");
        let next_token = xml_values(&text, "NextContinuationToken")
            .next()
            .filter(|_| truncated)
            .map(unescape_xml);
        Ok(ListPage {
            status: reply.status,
            keys,
            next_token,
            reply,
        })
    }

    /// A request with the body's SHA-256 signed.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> anyhow::Result<Reply> {
        self.send_signed(method, path, headers, body, BodySigning::Hashed)
            .await
    }

    pub async fn send_signed(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
        signing: BodySigning,
    ) -> anyhow::Result<Reply> {
        let (all, _) = self.sign(method, path, headers, &body, signing);
        self.raw(method, path, &all, body).await
    }

    /// A signed request whose response body is left to the caller to stream.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
        signing: BodySigning,
    ) -> anyhow::Result<hyper::Response<Incoming>> {
        let (all, _) = self.sign(method, path, headers, &body, signing);
        self.raw_response(method, path, &all, body).await
    }

    /// Signs a request; returns every header to send (Host and Authorization included) and the
    /// signature, which seeds the chunk signatures of `aws-chunked` bodies.
    pub fn sign(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        signing: BodySigning,
    ) -> (Vec<(String, String)>, String) {
        let amz_date = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        self.sign_at(&amz_date, method, path, headers, body, signing)
    }

    fn sign_at(
        &self,
        amz_date: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        signing: BodySigning,
    ) -> (Vec<(String, String)>, String) {
        let date = &amz_date[..8];
        let payload = match signing {
            BodySigning::Hashed => hex::encode(Sha256::digest(body)),
            BodySigning::Literal(v) => v.to_string(),
        };
        let mut all: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
            .collect();
        all.push(("host".into(), self.host.clone()));
        all.push(("x-amz-date".into(), amz_date.to_string()));
        all.push(("x-amz-content-sha256".into(), payload.clone()));
        all.sort();
        let (uri, query) = path.split_once('?').unwrap_or((path, ""));
        let mut pairs: Vec<(&str, &str)> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').unwrap_or((p, "")))
            .collect();
        pairs.sort();
        let canonical_query: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let signed: Vec<&str> = all.iter().map(|(k, _)| k.as_str()).collect();
        let signed = signed.join(";");
        let canonical_headers: String = all
            .iter()
            .map(|(k, v)| format!("{k}:{}\n", v.trim()))
            .collect();
        let canonical = format!(
            "{method}\n{uri}\n{}\n{canonical_headers}\n{signed}\n{payload}",
            canonical_query.join("&")
        );
        let region = &self.config.region;
        let scope = format!("{date}/{region}/s3/aws4_request");
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let key = signing_key(&self.config.secret_key, date, region);
        let signature = hex::encode(hmac(&key, to_sign.as_bytes()));
        all.push((
            "authorization".into(),
            format!(
                "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}",
                self.config.access_key
            ),
        ));
        (all, signature)
    }

    /// Sends exactly these headers (unsigned unless they carry a signature) and reads the whole
    /// response.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        body: Bytes,
    ) -> anyhow::Result<Reply> {
        let resp = self.raw_response(method, path, headers, body).await?;
        read_reply(resp).await
    }

    /// A request whose body is streamed, signed `UNSIGNED-PAYLOAD` (the body cannot be hashed
    /// before it is sent): `headers` should carry its length, and a checksum or `Content-MD5`
    /// for the server to check it by. The response is read whole.
    pub async fn stream(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Body,
    ) -> anyhow::Result<Reply> {
        let (all, _) = self.sign(method, path, headers, &[], BodySigning::UNSIGNED);
        let resp = self.send_body(method, path, &all, body).await?;
        read_reply(resp).await
    }

    async fn raw_response(
        &self,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        body: Bytes,
    ) -> anyhow::Result<hyper::Response<Incoming>> {
        let body = Full::new(body).map_err(|never| match never {}).boxed();
        self.send_body(method, path, headers, body).await
    }

    async fn send_body(
        &self,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        body: Body,
    ) -> anyhow::Result<hyper::Response<Incoming>> {
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.endpoint));
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let req = req.body(body).context("building the request")?;
        self.http
            .request(req)
            .await
            .with_context(|| format!("{method} {}{path}", self.endpoint))
    }
}

/// A response with its whole body.
async fn read_reply(resp: hyper::Response<Incoming>) -> anyhow::Result<Reply> {
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = resp
        .into_body()
        .collect()
        .await
        .context("reading the response body")?
        .to_bytes();
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// A query value or single path segment, percent-encoded as SigV4 wants it (`/` too).
pub fn query_value(value: &str) -> String {
    utf8_percent_encode(value, STRICT).to_string()
}

/// `/bucket/key`, the key percent-encoded as in a canonical URI.
pub fn object_path(bucket: &str, key: &str) -> String {
    if key.is_empty() {
        format!("/{bucket}")
    } else {
        format!("/{bucket}/{}", utf8_percent_encode(key, KEY))
    }
}

fn unescape_xml(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

pub fn signing_key(secret: &str, date: &str, region: &str) -> [u8; 32] {
    let k = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k = hmac(&k, region.as_bytes());
    let k = hmac(&k, b"s3");
    hmac(&k, b"aws4_request")
}

pub fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

fn tls_config(config: &ClientConfig) -> anyhow::Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS versions")?;
    if config.insecure {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth());
    }
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = &config.ca_file {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            roots
                .add(cert.with_context(|| format!("parsing {}", path.display()))?)
                .with_context(|| format!("a certificate of {}", path.display()))?;
        }
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// `--insecure`: any certificate is accepted, but handshake signatures are still checked.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's example "GET Object" of "Signature Calculations for the Authorization Header:
    /// Transferring Payload in a Single Chunk".
    #[test]
    fn signature_matches_the_aws_example() {
        let mut config = ClientConfig::new(
            "http://examplebucket.s3.amazonaws.com",
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        );
        config.insecure = true;
        let client = Client::new(config).unwrap();
        let (headers, signature) = client.sign_at(
            "20130524T000000Z",
            "GET",
            "/test.txt",
            &[("Range", "bytes=0-9")],
            b"",
            BodySigning::Hashed,
        );
        assert_eq!(
            signature,
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
        let auth = &headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .unwrap()
            .1;
        assert!(auth.contains("SignedHeaders=host;range;x-amz-content-sha256;x-amz-date"));
    }

    #[test]
    fn keys_are_encoded_like_a_canonical_uri() {
        assert_eq!(object_path("b", "a b/c+d"), "/b/a%20b/c%2Bd");
        assert_eq!(object_path("b", ""), "/b");
    }

    #[test]
    fn xml_values_and_entities() {
        let xml = "<a><Key>x&amp;y</Key><Key>z</Key></a>";
        let keys: Vec<String> = xml_values(xml, "Key").map(unescape_xml).collect();
        assert_eq!(keys, ["x&y", "z"]);
    }
}
