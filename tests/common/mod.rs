//! Test harness: a `tessera dev` cluster of real processes in a temporary folder, and a small
//! SigV4-signing S3 client over real TCP.
#![allow(dead_code)] // each test file uses part of the harness

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "TESTACCESSKEY";
pub const SECRET_KEY: &str = "test-secret-key-0123456789";
pub const REGION: &str = "us-east-1";
pub const NODES: [&str; 6] = ["z1-n1", "z1-n2", "z2-n1", "z2-n2", "z3-n1", "z3-n2"];

/// A running dev cluster; every process is stopped when it is dropped.
pub struct TestCluster {
    pub dir: tempfile::TempDir,
    pub endpoint: String,
    dev: Child,
    restarted: Vec<Child>,
}

impl TestCluster {
    pub fn start() -> TestCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut dev = Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args(["dev", "--data-dir"])
            .arg(dir.path())
            .args(["--s3-port", &port.to_string()])
            .env("TESSERA_ACCESS_KEY_ID", ACCESS_KEY)
            .env("TESSERA_SECRET_ACCESS_KEY", SECRET_KEY)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting tessera dev");
        let stdout = dev.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(endpoint) = line.strip_prefix("S3 endpoint: ") {
                    let _ = tx.send(endpoint.trim().to_string());
                }
            }
        });
        let endpoint = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("tessera dev printed its endpoint");
        TestCluster {
            dir,
            endpoint,
            dev,
            restarted: Vec::new(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn client(&self) -> S3Client {
        S3Client::new(&self.endpoint, ACCESS_KEY, SECRET_KEY)
    }

    fn pid_file(&self, process: &str) -> PathBuf {
        self.path().join(process).join("pid")
    }

    /// SIGKILLs a node (or "gateway") by the pid it recorded.
    pub fn kill(&self, process: &str) {
        let pid: i32 = std::fs::read_to_string(self.pid_file(process))
            .expect("pid file")
            .trim()
            .parse()
            .unwrap();
        unsafe { libc::kill(pid, libc::SIGKILL) };
        // Wait until the port is closed, so that the next request sees it down.
        let start = Instant::now();
        while unsafe { libc::kill(pid, 0) } == 0 && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts a node (or "gateway") again from its config file, and waits until it listens.
    pub fn restart(&mut self, process: &str) {
        let config = self.path().join("config").join(format!("{process}.toml"));
        let child = Command::new(env!("CARGO_BIN_EXE_tessera"))
            .arg("server")
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("restarting a process");
        if process == "gateway" {
            std::fs::write(self.pid_file(process), child.id().to_string()).unwrap();
        }
        self.restarted.push(child);
        let addr = listen_addr(&config, process);
        let start = Instant::now();
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{process} did not come back"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every fragment file on every node, except those still being written.
    pub fn fragment_files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for node in NODES {
            let dir = self.path().join(node).join("fragments");
            let mut found = Vec::new();
            walk(&dir, &mut found);
            files.extend(
                found
                    .into_iter()
                    .filter(|f| !f.starts_with(dir.join("tmp"))),
            );
        }
        files
    }
}

fn listen_addr(config: &Path, process: &str) -> String {
    let text = std::fs::read_to_string(config).unwrap();
    let value: toml::Value = toml::from_str(&text).unwrap();
    if process == "gateway" {
        value["gateway"]["listen"].as_str().unwrap().to_string()
    } else {
        value["cluster"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"].as_str() == Some(process))
            .unwrap()["addr"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, out);
        } else {
            out.push(path);
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for child in &mut self.restarted {
            let _ = child.kill();
            let _ = child.wait();
        }
        unsafe { libc::kill(self.dev.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(_)) = self.dev.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.dev.kill();
        let _ = self.dev.wait();
    }
}

/// An S3 answer.
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
        let text = self.text();
        text.split("<Code>")
            .nth(1)
            .and_then(|s| s.split("</Code>").next())
            .unwrap_or("")
            .to_string()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// How a request body is signed.
pub enum BodySigning {
    /// x-amz-content-sha256 is the body's SHA-256.
    Hashed,
    /// x-amz-content-sha256 is this literal value (UNSIGNED-PAYLOAD, STREAMING-...).
    Literal(&'static str),
}

pub struct S3Client {
    endpoint: String,
    host: String,
    access_key: String,
    secret_key: String,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl S3Client {
    pub fn new(endpoint: &str, access_key: &str, secret_key: &str) -> S3Client {
        S3Client {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            host: endpoint
                .split("://")
                .nth(1)
                .unwrap()
                .trim_end_matches('/')
                .to_string(),
            access_key: access_key.into(),
            secret_key: secret_key.into(),
            http: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send("GET", path, &[], Bytes::new()).await
    }

    pub async fn put(&self, path: &str, body: impl Into<Bytes>) -> Reply {
        self.send("PUT", path, &[], body.into()).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send("DELETE", path, &[], Bytes::new()).await
    }

    pub async fn head(&self, path: &str) -> Reply {
        self.send("HEAD", path, &[], Bytes::new()).await
    }

    /// A signed request; `path` may carry a query (already encoded as S3 clients send it).
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Reply {
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
    ) -> Reply {
        let (mut all, _) = self.sign(method, path, headers, &body, signing);
        all.retain(|(k, _)| k != "host");
        self.raw(method, path, &all, body).await
    }

    /// Signs a request; returns all headers to send (with Authorization) and the seed signature.
    pub fn sign(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        signing: BodySigning,
    ) -> (Vec<(String, String)>, String) {
        let now = chrono::Utc::now();
        let amz_date = now.format("%Y%m%dT%H%M%SZ").to_string();
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
        all.push(("x-amz-date".into(), amz_date.clone()));
        all.push(("x-amz-content-sha256".into(), payload.clone()));
        all.sort();
        let (uri, query) = path.split_once('?').unwrap_or((path, ""));
        let mut pairs: Vec<(String, String)> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k.to_string(), v.to_string())
            })
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
        let scope = format!("{date}/{REGION}/s3/aws4_request");
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let key = signing_key(&self.secret_key, date);
        let signature = hex::encode(hmac(&key, to_sign.as_bytes()));
        all.push((
            "authorization".into(),
            format!(
                "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}",
                self.access_key
            ),
        ));
        (all, signature)
    }

    /// Sends exactly these headers, unsigned unless they carry a signature.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        body: Bytes,
    ) -> Reply {
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.endpoint));
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let resp = self
            .http
            .request(req.body(Full::new(body)).unwrap())
            .await
            .expect("the gateway answered");
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
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Reply {
            status,
            headers,
            body,
        }
    }
}

pub fn signing_key(secret: &str, date: &str) -> [u8; 32] {
    let k = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k = hmac(&k, REGION.as_bytes());
    let k = hmac(&k, b"s3");
    hmac(&k, b"aws4_request")
}

pub fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Deterministic pseudo-random bytes, so a failure can be reproduced.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

pub fn md5_hex(data: &[u8]) -> String {
    use md5::Digest as _;
    hex::encode(md5::Md5::digest(data))
}
