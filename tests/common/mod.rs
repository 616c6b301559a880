//! Test harness: a `tessera dev` cluster of real processes in a temporary folder, and a small
//! SigV4-signing S3 client over real TCP (`tessera::client`).
#![allow(dead_code)] // each test file uses part of the harness

pub mod proxy;

use bytes::Bytes;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tessera::client;

pub const ACCESS_KEY: &str = "TESTACCESSKEY";
pub const SECRET_KEY: &str = "test-secret-key-0123456789";
pub const REGION: &str = "us-east-1";
/// The storage nodes of a default (three zones of two) dev cluster.
pub const NODES: [&str; 6] = ["z1-n1", "z1-n2", "z2-n1", "z2-n2", "z3-n1", "z3-n2"];

/// A running dev cluster; every process is stopped when it is dropped.
pub struct TestCluster {
    pub dir: tempfile::TempDir,
    pub endpoint: String,
    /// Every region's name and S3 endpoint, in order (one region: its name is `REGION`).
    pub endpoints: Vec<(String, String)>,
    dev: Child,
    restarted: Vec<Child>,
    /// The region that process names (`kill`, `restart`, ...) refer to, when there are several.
    selected: Option<String>,
}

impl TestCluster {
    pub fn start() -> TestCluster {
        TestCluster::start_with(&[])
    }

    /// Starts `tessera dev` with extra arguments.
    pub fn start_with(extra: &[&str]) -> TestCluster {
        TestCluster::start_in(tempfile::tempdir().expect("temp dir"), extra)
    }

    /// Starts `tessera dev` in a folder that may already hold nodes' data dirs (named after the
    /// nodes), which the new cluster's nodes then open.
    pub fn start_in(dir: tempfile::TempDir, extra: &[&str]) -> TestCluster {
        TestCluster::launch(dir, extra, 1)
    }

    /// Starts `tessera dev --regions N`: the regions `us-east-1`, `eu-west-1`, ..., each its own
    /// cluster of three zones of two nodes, replicating to each other. `select` picks the region
    /// that process names refer to (the first at start).
    pub fn start_regions(count: usize) -> TestCluster {
        TestCluster::start_regions_with(count, &[])
    }

    /// `start_regions` with extra arguments to `tessera dev`.
    pub fn start_regions_with(count: usize, extra: &[&str]) -> TestCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let count_arg = count.to_string();
        let args: Vec<&str> = ["--regions", count_arg.as_str()]
            .into_iter()
            .chain(extra.iter().copied())
            .collect();
        let mut cluster = TestCluster::launch(dir, &args, count);
        let first = cluster.endpoints[0].0.clone();
        cluster.select(&first);
        cluster
    }

    fn launch(dir: tempfile::TempDir, extra: &[&str], regions: usize) -> TestCluster {
        // Every port of the cluster comes from this process's allocator: a port `tessera dev`
        // picked at random could be one another test's killed node is about to listen on again.
        // Each region's S3 and console ports follow the previous region's, then come the nodes.
        let first = free_ports(CLUSTER_PORTS * regions as u32);
        let mut dev = Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args(["dev", "--data-dir"])
            .arg(dir.path())
            .args(["--s3-port", &first.to_string()])
            .args(["--console-port", &(first + 1).to_string()])
            .args(["--node-ports", &(first + 2 * regions as u16).to_string()])
            .args(extra)
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
                // `S3 endpoint: URL`, or with several regions `S3 endpoint (NAME): URL`.
                let Some(rest) = line.strip_prefix("S3 endpoint") else {
                    continue;
                };
                let (name, url) = rest.split_once(": ").unwrap_or_default();
                let name = name.trim().trim_matches(['(', ')']);
                let name = if name.is_empty() { REGION } else { name };
                let _ = tx.send((name.to_string(), url.trim().to_string()));
            }
        });
        let endpoints: Vec<(String, String)> = (0..regions)
            .map(|_| {
                rx.recv_timeout(Duration::from_secs(120))
                    .expect("tessera dev printed its endpoints")
            })
            .collect();
        TestCluster {
            dir,
            endpoint: endpoints[0].1.clone(),
            endpoints,
            dev,
            restarted: Vec::new(),
            selected: None,
        }
    }

    /// Makes process names refer to the processes of `region` (of `start_regions`).
    pub fn select(&mut self, region: &str) {
        let (_, endpoint) = (self.endpoints.iter())
            .find(|(name, _)| name == region)
            .unwrap_or_else(|| panic!("no region {region}"));
        self.endpoint = endpoint.clone();
        self.selected = Some(region.to_string());
    }

    /// A client of one region's endpoint, signing for that region.
    pub fn client_in(&self, region: &str) -> S3Client {
        self.client_in_as(region, ACCESS_KEY, SECRET_KEY)
    }

    /// A client of one region's endpoint with another access key.
    pub fn client_in_as(&self, region: &str, key_id: &str, secret: &str) -> S3Client {
        let (_, endpoint) = (self.endpoints.iter())
            .find(|(name, _)| name == region)
            .unwrap_or_else(|| panic!("no region {region}"));
        S3Client::in_region(endpoint, key_id, secret, region)
    }

    /// The folder of the selected region (of the cluster, with one region).
    pub fn path(&self) -> PathBuf {
        match &self.selected {
            Some(region) => self.dir.path().join(region),
            None => self.dir.path().to_path_buf(),
        }
    }

    /// Puts a TCP proxy between the selected region's gateway and its peer region `peer`: the
    /// gateway is restarted to send to the proxy, which passes on to the peer's endpoint.
    pub async fn proxy_peer(&mut self, peer: &str) -> proxy::Proxy {
        let config = self.path().join("config").join("gateway.toml");
        let mut doc: toml::Value =
            toml::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
        let peers = doc["cluster"]["region"]["peers"].as_array_mut().unwrap();
        let entry = (peers.iter_mut())
            .find(|p| p["name"].as_str() == Some(peer))
            .unwrap_or_else(|| panic!("no peer region {peer}"));
        let endpoint = entry["endpoint"].as_str().unwrap().to_string();
        let upstream = endpoint.trim_start_matches("http://").to_string();
        let listen = format!("127.0.0.1:{}", free_port());
        entry["endpoint"] = format!("http://{listen}").into();
        self.kill("gateway");
        std::fs::write(&config, toml::to_string(&doc).unwrap()).unwrap();
        let proxy = proxy::Proxy::start(listen.parse().unwrap(), upstream.parse().unwrap()).await;
        self.restart("gateway");
        proxy
    }

    /// The first node's address and the cluster's secret, from that node's config.
    pub fn first_node(&self) -> (String, String) {
        let (node, _) = self.nodes().remove(0);
        self.node_addr(&node)
    }

    /// A node's address and the cluster's secret, from that node's config.
    pub fn node_addr(&self, node: &str) -> (String, String) {
        let config = self.path().join("config").join(format!("{node}.toml"));
        let config: toml::Value =
            toml::from_str(&std::fs::read_to_string(config).unwrap()).unwrap();
        let secret = config["cluster"]["secret"].as_str().unwrap().to_string();
        let addr = config["cluster"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"].as_str() == Some(node))
            .unwrap()["addr"]
            .as_str()
            .unwrap()
            .to_string();
        (addr, secret)
    }

    pub fn client(&self) -> S3Client {
        S3Client::new(&self.endpoint, ACCESS_KEY, SECRET_KEY)
    }

    fn pid_file(&self, process: &str) -> PathBuf {
        self.path().join(process).join("pid")
    }

    fn pid(&self, process: &str) -> i32 {
        std::fs::read_to_string(self.pid_file(process))
            .expect("pid file")
            .trim()
            .parse()
            .unwrap()
    }

    /// Sends a signal (SIGSTOP, SIGCONT, ...) to a node or "gateway".
    pub fn signal(&self, process: &str, signal: i32) {
        unsafe { libc::kill(self.pid(process), signal) };
    }

    /// SIGKILLs a node (or "gateway") by the pid it recorded.
    pub fn kill(&mut self, process: &str) {
        let pid = self.pid(process);
        unsafe { libc::kill(pid, libc::SIGKILL) };
        // Wait until it is gone, so that the next request sees it down and a restart can take
        // its port. Processes restarted by the harness are its children: reap them, or they
        // would linger as zombies.
        let start = Instant::now();
        loop {
            for child in &mut self.restarted {
                let _ = child.try_wait();
            }
            if unsafe { libc::kill(pid, 0) } != 0 {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{process} (pid {pid}) outlived SIGKILL by 60 s: {}",
                process_state(pid)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts a node (or "gateway") again from its config file, and waits until it listens.
    pub fn restart(&mut self, process: &str) {
        let config = self.path().join("config").join(format!("{process}.toml"));
        let pid = self.serve(&config, &listen_addr(&config, process));
        if process == "gateway" {
            std::fs::write(self.pid_file(process), pid.to_string()).unwrap();
        }
    }

    /// Starts `tessera server` with a config file, stopped with the cluster; waits until it
    /// listens on `addr`, and returns its pid.
    fn serve(&mut self, config: &Path, addr: &str) -> u32 {
        let child = Command::new(env!("CARGO_BIN_EXE_tessera"))
            .arg("server")
            .arg("--config")
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting a server process");
        let pid = child.id();
        self.restarted.push(child);
        let start = Instant::now();
        loop {
            // Whatever listens must be this process: one that could not bind (the old one still
            // holds the port) would leave the test talking to the old one.
            let child = self.restarted.last_mut().expect("just pushed");
            if let Ok(Some(status)) = child.try_wait() {
                panic!("{} exited at start: {status}", config.display());
            }
            if std::net::TcpStream::connect(addr).is_ok() {
                return pid;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{} did not start listening",
                config.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Prints the warnings and errors in the logs of the processes `tessera dev` started (those
    /// restarted by the harness log to the test's stderr): what a failed test needs explained.
    fn print_warnings(&self) {
        let dirs: Vec<PathBuf> = match self.selected {
            Some(_) => (self.endpoints.iter())
                .map(|(name, _)| self.dir.path().join(name).join("logs"))
                .collect(),
            None => vec![self.path().join("logs")],
        };
        let logs = dirs
            .iter()
            .filter_map(|dir| std::fs::read_dir(dir).ok())
            .flatten();
        for log in logs.flatten() {
            let text = std::fs::read_to_string(log.path()).unwrap_or_default();
            let worrying: Vec<&str> = text
                .lines()
                .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
                .collect();
            let shown = &worrying[worrying.len().saturating_sub(40)..];
            if !shown.is_empty() {
                eprintln!("--- {} (last warnings)", log.path().display());
                shown.iter().for_each(|line| eprintln!("{line}"));
            }
        }
    }

    /// (id, zone) of every storage node, from the cluster's config.
    pub fn nodes(&self) -> Vec<(String, String)> {
        let text = std::fs::read_to_string(self.path().join("config").join("gateway.toml"))
            .expect("gateway config");
        let value: toml::Value = toml::from_str(&text).unwrap();
        value["cluster"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                let field = |name: &str| n[name].as_str().unwrap().to_string();
                (field("id"), field("zone"))
            })
            .collect()
    }

    /// Ids of the storage nodes of one zone.
    pub fn zone(&self, zone: &str) -> Vec<String> {
        self.nodes()
            .into_iter()
            .filter(|(_, z)| z == zone)
            .map(|(id, _)| id)
            .collect()
    }

    /// Puts a TCP proxy between a node and everyone who calls it: the node is restarted to listen
    /// on a new port, and the proxy takes its address in the cluster.
    pub async fn proxy(&mut self, node: &str) -> proxy::Proxy {
        let config = self.path().join("config").join(format!("{node}.toml"));
        let address = listen_addr(&config, node);
        self.kill(node);
        let port = free_port();
        let upstream = format!("127.0.0.1:{port}");
        self.edit_config(node, "node", "listen", Some(upstream.clone().into()));
        let proxy = proxy::Proxy::start(address.parse().unwrap(), upstream.parse().unwrap()).await;
        self.restart(node);
        proxy
    }

    /// Restarts a node (or "gateway") with one setting of its `[node]` (`[gateway]`) config
    /// changed (`None`: back to its default).
    pub fn restart_with(&mut self, process: &str, setting: &str, value: Option<toml::Value>) {
        let role = if process == "gateway" {
            "gateway"
        } else {
            "node"
        };
        self.restart_with_in(process, &[(role, setting, value)]);
    }

    /// Restarts a process with settings of sections of its config (`cluster`, `node` or
    /// `gateway`) changed (`None`: back to its default).
    pub fn restart_with_in(
        &mut self,
        process: &str,
        settings: &[(&str, &str, Option<toml::Value>)],
    ) {
        self.kill(process);
        for (section, setting, value) in settings {
            self.edit_config(process, section, setting, value.clone());
        }
        self.restart(process);
    }

    fn edit_config(&self, process: &str, section: &str, setting: &str, value: Option<toml::Value>) {
        let config = self.path().join("config").join(format!("{process}.toml"));
        let mut doc: toml::Value =
            toml::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
        let table = doc[section].as_table_mut().unwrap();
        match value {
            Some(value) => table.insert(setting.into(), value),
            None => table.remove(setting),
        };
        std::fs::write(&config, toml::to_string(&doc).unwrap()).unwrap();
    }

    /// Starts another gateway on the same cluster (a copy of the dev gateway's config on a new
    /// port); returns its endpoint. It is stopped with the cluster.
    pub fn second_gateway(&mut self) -> String {
        let port = free_port();
        let config_dir = self.path().join("config");
        let text = std::fs::read_to_string(config_dir.join("gateway.toml")).unwrap();
        let mut value: toml::Value = toml::from_str(&text).unwrap();
        let listen = format!("127.0.0.1:{port}");
        value["gateway"]["listen"] = toml::Value::String(listen.clone());
        // Its own console port: the first gateway holds the one in the copied config.
        value["gateway"]["console_listen"] =
            toml::Value::String(format!("127.0.0.1:{}", free_port()));
        let config = config_dir.join("gateway2.toml");
        std::fs::write(&config, toml::to_string(&value).unwrap()).unwrap();
        self.serve(&config, &listen);
        format!("http://{listen}")
    }

    /// Kills a node, deletes everything it stored, and starts it again empty.
    pub fn wipe(&mut self, node: &str) {
        self.kill(node);
        std::fs::remove_dir_all(self.path().join(node)).unwrap();
        self.restart(node);
    }

    /// Every fragment file on every node, except those still being written and those the
    /// scrubber moved aside.
    pub fn fragment_files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for (node, _) in self.nodes() {
            let dir = self.path().join(&node).join("fragments");
            let mut found = Vec::new();
            walk(&dir, &mut found);
            files.extend(found.into_iter().filter(|f| {
                !f.starts_with(dir.join("tmp")) && !f.starts_with(dir.join("corrupt"))
            }));
        }
        files
    }
}

/// A port for a listener the harness places (a gateway, a proxy). Taken below the kernel's
/// ephemeral range (32768 and up here), from which `tessera dev` picks its nodes' ports and
/// outgoing connections take theirs: a port chosen by binding port 0 and releasing it could be
/// handed to another test's node before our gateway binds it, and the test would then talk to
/// that node. Unique within this test process; the process id spreads the test binaries apart.
/// Ports a test cluster is given: its S3 endpoint, its console and up to 14 storage nodes.
const CLUSTER_PORTS: u32 = 16;

fn free_port() -> u16 {
    free_ports(1)
}

/// The first of `count` consecutive free ports below the kernel's ephemeral range, none of them
/// handed out before by this process: the tests running at once never share a port, even one
/// whose process is down for a restart.
fn free_ports(count: u32) -> u16 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    loop {
        let next = NEXT.fetch_add(count, std::sync::atomic::Ordering::Relaxed);
        let first = 10_000 + (std::process::id() % 200 * 100 + next) % 20_000;
        if first + count > 30_000 {
            continue;
        }
        let free = (first..first + count)
            .all(|port| std::net::TcpListener::bind(("127.0.0.1", port as u16)).is_ok());
        if free {
            return u16::try_from(first).expect("below 30000");
        }
    }
}

fn listen_addr(config: &Path, process: &str) -> String {
    let text = std::fs::read_to_string(config).unwrap();
    let value: toml::Value = toml::from_str(&text).unwrap();
    if process == "gateway" {
        value["gateway"]["listen"].as_str().unwrap().to_string()
    } else if let Some(listen) = value["node"].get("listen") {
        listen.as_str().unwrap().to_string()
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
        if std::thread::panicking() {
            self.print_warnings();
            // The whole logs and the data explain a failure that happens once in a while.
            self.dir.disable_cleanup(true);
            eprintln!(
                "--- the cluster's directory is kept: {}",
                self.dir.path().display()
            );
        }
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

#[allow(unused_imports)] // each test file uses part of the harness
pub use tessera::client::{hmac, BodySigning, Reply};

/// The harness's client: `tessera::client` with the test credentials, panicking when the
/// gateway does not answer.
#[derive(Clone)]
pub struct S3Client {
    inner: client::Client,
}

impl S3Client {
    pub fn new(endpoint: &str, access_key: &str, secret_key: &str) -> S3Client {
        S3Client::in_region(endpoint, access_key, secret_key, REGION)
    }

    /// A client of a gateway that serves another region than the default one.
    pub fn in_region(endpoint: &str, access_key: &str, secret_key: &str, region: &str) -> S3Client {
        let mut config = client::ClientConfig::new(endpoint, access_key, secret_key);
        config.region = region.into();
        S3Client {
            inner: client::Client::new(config).expect("an S3 client"),
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
        self.inner
            .send_signed(method, path, headers, body, signing)
            .await
            .expect("the gateway answered")
    }

    /// A signed request that may fail to get an answer at all (the gateway killed mid-request).
    pub async fn try_send(&self, method: &str, path: &str, body: Bytes) -> Option<Reply> {
        self.inner
            .send_signed(method, path, &[], body, BodySigning::Hashed)
            .await
            .ok()
    }

    /// Signs a request; returns all headers to send (with Host and Authorization) and the seed
    /// signature.
    pub fn sign(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        signing: BodySigning,
    ) -> (Vec<(String, String)>, String) {
        self.inner.sign(method, path, headers, body, signing)
    }

    /// Sends exactly these headers, unsigned unless they carry a signature.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        body: Bytes,
    ) -> Reply {
        self.inner
            .raw(method, path, headers, body)
            .await
            .expect("the gateway answered")
    }
}

/// Creates the bucket at `path` with Object Lock enabled (and so versioning).
pub async fn create_lock_bucket(s3: &S3Client, path: &str) {
    let lock = [("x-amz-bucket-object-lock-enabled", "true")];
    let created = s3.send("PUT", path, &lock, Bytes::new()).await;
    assert_eq!(created.status, 200, "{}", created.text());
}

/// A PUT of an XML settings body (versioning, lifecycle, legal hold...) with the Content-MD5
/// that S3 requires of them.
pub async fn put_xml(s3: &S3Client, path: &str, body: &str) -> Reply {
    let md5 = content_md5(body.as_bytes());
    s3.send(
        "PUT",
        path,
        &[("content-md5", &md5)],
        Bytes::copy_from_slice(body.as_bytes()),
    )
    .await
}

pub fn signing_key(secret: &str, date: &str) -> [u8; 32] {
    client::signing_key(secret, date, REGION)
}

/// The keys a node lists in `bucket` (up to 1000), straight from the node.
pub async fn listed_keys(
    client: &node_rpc::NodeClient,
    addr: &str,
    bucket: node_rpc::record::BucketId,
) -> Vec<String> {
    let request = node_rpc::protocol::ListRequest {
        bucket,
        prefix: String::new(),
        start_after: None,
        delimiter: None,
        limit: 1000,
    };
    let listing = client.list(addr, &request).await.unwrap();
    listing.items.iter().map(|i| i.name().to_string()).collect()
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

/// Base64 of the body's MD5, as `Content-MD5` carries it.
pub fn content_md5(body: &[u8]) -> String {
    use base64::Engine as _;
    use md5::Digest as _;
    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(body))
}

/// A reply's status and S3 error code, to compare with `err`.
pub fn code(reply: &Reply) -> (u16, String) {
    (reply.status, reply.code())
}

pub fn err(status: u16, code: &str) -> (u16, String) {
    (status, code.to_string())
}

/// Every value of `<tag>` in an XML text, in order.
pub fn xml_values(text: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    text.split(&open)
        .skip(1)
        .filter_map(|rest| rest.find(&close).map(|end| rest[..end].to_string()))
        .collect()
}

/// A process's scheduler state and where in the kernel it waits, for a process that will not die.
fn process_state(pid: i32) -> String {
    let read =
        |file: &str| std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap_or_default();
    let state = read("status")
        .lines()
        .find(|l| l.starts_with("State:"))
        .unwrap_or("State: unknown")
        .to_string();
    format!("{state}, waiting in {:?}", read("wchan"))
}

/// The first value of `<tag>` in a reply's XML.
pub fn xml_value(reply: &Reply, tag: &str) -> Option<String> {
    xml_values(&reply.text(), tag).into_iter().next()
}

/// Starts a multipart upload and returns its id.
pub async fn start_upload(s3: &S3Client, path: &str, headers: &[(&str, &str)]) -> String {
    let reply = s3
        .send("POST", &format!("{path}?uploads"), headers, Bytes::new())
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    xml_value(&reply, "UploadId").expect("an upload id")
}

/// Polls until `done`, for at most 20 s.
pub async fn wait_until(mut done: impl FnMut() -> bool, what: &str) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Heals a node through the admin API; returns the heal's progress once it has finished.
pub async fn heal(s3: &S3Client, node: &str) -> serde_json::Value {
    let path = format!("/_tessera/heal?node={node}");
    let started = s3.send("POST", &path, &[], Bytes::new()).await;
    assert_eq!(started.status, 202, "{}", started.text());
    heal_finished(s3).await
}

/// The running heal's progress once it has finished.
pub async fn heal_finished(s3: &S3Client) -> serde_json::Value {
    let begun = Instant::now();
    loop {
        let reply = s3.get("/_tessera/heal").await;
        let progress: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        if progress["running"] == false {
            return progress;
        }
        assert!(
            begun.elapsed() < Duration::from_secs(120),
            "heal finishes: {progress}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The admin API's view of the nodes.
pub async fn node_status(s3: &S3Client) -> Vec<serde_json::Value> {
    let reply = s3.get("/_tessera/status").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let status: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    serde_json::from_value(status["nodes"].clone()).unwrap()
}

/// Waits until no node waits for a heal and none runs; the last heal must have had no errors.
pub async fn wait_healed(s3: &S3Client) {
    let begun = Instant::now();
    loop {
        assert!(begun.elapsed() < Duration::from_secs(120), "healed in time");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let waiting = node_status(s3)
            .await
            .iter()
            .any(|n| n["needs_heal"] == true);
        let reply = s3.get("/_tessera/heal").await;
        let progress: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        if !waiting && progress["running"] != true {
            assert!(progress.is_null() || progress["errors"] == 0, "{progress}");
            return;
        }
    }
}

/// `GET /metrics` of a node or a gateway's console port, with the metrics token.
pub async fn scrape(addr: &str, token: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /metrics HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\nconnection: close\r\n\r\n"
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    socket.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:.200}");
    answer
}

/// (key, version id, whether a delete marker) of every entry of a ListObjectVersions answer,
/// sorted.
pub fn listed_versions(listing: &str) -> Vec<(String, String, bool)> {
    let mut out = Vec::new();
    for (kind, marker) in [("<Version>", false), ("<DeleteMarker>", true)] {
        for entry in listing.split(kind).skip(1) {
            let key = xml_values(entry, "Key").remove(0);
            let id = xml_values(entry, "VersionId").remove(0);
            out.push((key, id, marker));
        }
    }
    out.sort();
    out
}
