//! The node protocol's security against real nodes: a captured call is refused when sent again or
//! with another body, a fragment upload is kept only with its own call's stream tag, and nodes
//! serving TLS are reached only by clients that trust the cluster's CA.

mod common;

use common::{listed_keys, random_bytes, TestCluster};
use erasure::FrameFormat;
use node_rpc::auth::{BodyDigest, ClusterSecret, StreamKey};
use node_rpc::body::full;
use node_rpc::client::{FragmentBody, NodeClient, RpcError};
use node_rpc::protocol::{CommitRequest, BLOCK_SIZE_HEADER, FRAMES_HEADER, MAX_BATCH_ENTRIES};
use node_rpc::protocol::{DATA_SHARDS_HEADER, RAW_FRAGMENT_PROTOCOL, SIZE_HEADER};
use node_rpc::record::{BucketId, ObjectRecord, Version};
use node_rpc::tls;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BUCKET: BucketId = [0x42; 16];

fn commit_of(key: &str) -> CommitRequest {
    let mut record = ObjectRecord::tombstone(Version::now(), false);
    record.deleted = false;
    record.etag = "d41d8cd98f00b204e9800998ecf8427e".into();
    CommitRequest {
        bucket: BUCKET,
        key: key.into(),
        record,
        upload_id: None,
        claim: None,
        replicate: None,
    }
}

/// The exact bytes a node client sends for a commit, caught by a listener that answers as a node
/// would; the call never reaches a node.
async fn captured_commit(client: &NodeClient, commit: CommitRequest) -> Vec<u8> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let client = client.clone();
    let call = tokio::spawn(async move { client.commit(&addr, &commit).await });
    let (mut socket, _) = listener.accept().await.unwrap();
    let mut request = Vec::new();
    loop {
        let mut buf = [0u8; 4096];
        let n = socket.read(&mut buf).await.unwrap();
        assert!(n > 0, "the request ended early");
        request.extend_from_slice(&buf[..n]);
        if let Some((head, body)) = split_head(&request) {
            if body.len() >= content_length(head) {
                break;
            }
        }
    }
    socket
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\ntrue")
        .await
        .unwrap();
    assert!(call.await.unwrap().unwrap(), "the client took the answer");
    request
}

fn split_head(message: &[u8]) -> Option<(&str, &[u8])> {
    let end = message.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&message[..end]).unwrap();
    Some((head, &message[end + 4..]))
}

fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().unwrap())
        })
        .unwrap_or(0)
}

/// Sends `bytes` on a new connection; returns the answer's status and body (read to the end of
/// the answer's length).
async fn send_bytes(addr: &str, bytes: &[u8]) -> (u16, String) {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    socket.write_all(bytes).await.unwrap();
    read_answer(&mut socket).await
}

async fn read_answer(socket: &mut TcpStream) -> (u16, String) {
    let mut answer = Vec::new();
    let read = async {
        loop {
            let mut buf = [0u8; 4096];
            let n = socket.read(&mut buf).await.unwrap();
            answer.extend_from_slice(&buf[..n]);
            if let Some((head, body)) = split_head(&answer) {
                if n == 0 || body.len() >= content_length(head) {
                    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
                    return (status, String::from_utf8_lossy(body).into_owned());
                }
            }
            assert!(n > 0, "the connection closed before an answer");
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the node answered")
}

/// A captured commit is taken once: sent again it is refused, and its headers with another body
/// (another key, same length) are refused too; neither key the attacker chose is listed.
#[tokio::test(flavor = "multi_thread")]
async fn captured_commits_are_not_taken_again_or_with_another_body() {
    let cluster = TestCluster::start();
    let (addr, secret) = cluster.first_node();
    let client = NodeClient::new(ClusterSecret::new(secret), Duration::from_secs(10));

    let tampered = captured_commit(&client, commit_of("victim/bbbb")).await;
    let tampered = String::from_utf8(tampered)
        .unwrap()
        .replace("\"key\":\"victim/bbbb\"", "\"key\":\"forged/bbbb\"");
    assert!(tampered.contains("forged/bbbb"));
    let (status, message) = send_bytes(&addr, tampered.as_bytes()).await;
    assert_eq!(
        status, 403,
        "another body under the same headers: {message}"
    );

    let original = captured_commit(&client, commit_of("victim/aaaa")).await;
    let (status, message) = send_bytes(&addr, &original).await;
    assert_eq!(status, 200, "the captured call, sent once: {message}");
    let (status, message) = send_bytes(&addr, &original).await;
    assert_eq!(status, 403, "the same bytes again: {message}");

    let keys = listed_keys(&client, &addr, BUCKET).await;
    assert_eq!(keys, ["victim/aaaa"], "only the call sent once is applied");
    assert!(!keys.iter().any(|k| k.starts_with("forged")));
}

/// A node refuses a head over its header size limit (431) before reading further, and a signed
/// call whose body stops arriving midway is answered 408 once the stall timeout passes, instead
/// of holding its connection and its task for as long as the sender likes.
#[tokio::test(flavor = "multi_thread")]
async fn oversized_heads_and_stalled_bodies_are_refused() {
    let mut cluster = TestCluster::start();
    let (node, _) = cluster.nodes().remove(0);
    let mut limits = toml::map::Map::new();
    limits.insert("stall_timeout_secs".into(), 2.into());
    cluster.restart_with(&node, "connections", Some(limits.into()));
    let (addr, secret) = cluster.first_node();
    let client = NodeClient::new(ClusterSecret::new(secret), Duration::from_secs(10));

    let padding = "x".repeat(10 << 10);
    let head = format!("GET /v1/health HTTP/1.1\r\nhost: node\r\nx-padding: {padding}\r\n\r\n");
    let (status, message) = send_bytes(&addr, head.as_bytes()).await;
    assert_eq!(status, 431, "10 KiB of headers: {message}");

    let call = captured_commit(&client, commit_of("stalled/aaaa")).await;
    let (head, body) = split_head(&call).unwrap();
    let mut socket = TcpStream::connect(&addr).await.unwrap();
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(b"\r\n\r\n").await.unwrap();
    socket.write_all(&body[..body.len() / 2]).await.unwrap();
    let started = std::time::Instant::now();
    let (status, message) = read_answer(&mut socket).await;
    assert_eq!(status, 408, "half a body, then nothing: {message}");
    assert!(started.elapsed() >= Duration::from_millis(1900));
    assert!(listed_keys(&client, &addr, BUCKET).await.is_empty());
}

/// A batch of lookups or commits longer than `MAX_BATCH_ENTRIES` is refused as a whole (400)
/// before any entry is served; one of exactly that many is answered entry by entry.
#[tokio::test(flavor = "multi_thread")]
async fn oversized_batches_are_refused() {
    let cluster = TestCluster::start();
    let (addr, secret) = cluster.first_node();
    let secret = ClusterSecret::new(secret);
    let bucket = hex::encode(BUCKET);
    let post = |path: &str, entries: Vec<String>| {
        let body = format!("[{}]", entries.join(","));
        let signed = secret.sign("POST", path, BodyDigest::of(body.as_bytes()));
        let mut call = format!("POST {path} HTTP/1.1\r\nhost: node\r\n");
        for (name, value) in &signed.headers {
            call.push_str(&format!("{name}: {value}\r\n"));
        }
        call.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
        call
    };
    let lookups = |n: usize| {
        (0..n)
            .map(|i| format!(r#"{{"bucket":"{bucket}","key":"k{i}"}}"#))
            .collect()
    };
    let (status, message) = send_bytes(
        &addr,
        post("/v1/objects", lookups(MAX_BATCH_ENTRIES + 1)).as_bytes(),
    )
    .await;
    assert_eq!(status, 400, "{message}");
    assert!(message.contains("at most"), "{message}");
    let (status, message) = send_bytes(
        &addr,
        post("/v1/objects", lookups(MAX_BATCH_ENTRIES)).as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{message}");
    let outcomes: Vec<serde_json::Value> = serde_json::from_str(&message).unwrap();
    assert_eq!(outcomes.len(), MAX_BATCH_ENTRIES);

    let commits: Vec<String> = (0..=MAX_BATCH_ENTRIES)
        .map(|i| serde_json::to_string(&commit_of(&format!("batched/{i}"))).unwrap())
        .collect();
    let (status, message) = send_bytes(&addr, post("/v1/commits", commits).as_bytes()).await;
    assert_eq!(status, 400, "{message}");
    let client = NodeClient::new(secret, Duration::from_secs(10));
    assert!(
        listed_keys(&client, &addr, BUCKET).await.is_empty(),
        "no commit of it applied"
    );
}

/// Fragment 1 of a random object of `layout`, encoded in 4+2.
fn fragment_1(layout: erasure::StripeLayout) -> Vec<u8> {
    let object = random_bytes(layout.size as usize, 5);
    let mut frames = Vec::new();
    let mut encoder = erasure::Codec::new(4, 2).unwrap().encoder(layout);
    encoder
        .push(&object, &mut |_, stripe| frames.push(stripe[1].clone()))
        .unwrap();
    frames.concat()
}

/// The head of a signed upload of fragment 1 of `id`, and its stream tag key.
fn fragment_upload(
    secret: &ClusterSecret,
    id: &str,
    layout: erasure::StripeLayout,
    raw: bool,
) -> (String, StreamKey) {
    let path = format!("/v1/fragment/{id}/1");
    let signed = secret.sign("PUT", &path, BodyDigest::Streamed);
    let mut head = format!("PUT {path} HTTP/1.1\r\nhost: node\r\n");
    for (name, value) in &signed.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("{SIZE_HEADER}: {}\r\n", layout.size));
    head.push_str(&format!("{DATA_SHARDS_HEADER}: {}\r\n", layout.data_shards));
    head.push_str(&format!("{BLOCK_SIZE_HEADER}: {}\r\n", layout.block_size));
    if layout.frames != FrameFormat::PositionFirst {
        head.push_str(&format!("{FRAMES_HEADER}: {}\r\n", layout.frames.number()));
    }
    if raw {
        head.push_str(&format!(
            "connection: upgrade\r\nupgrade: {RAW_FRAGMENT_PROTOCOL}\r\n\r\n"
        ));
    } else {
        let len = layout.fragment_len() + 32;
        head.push_str(&format!("content-length: {len}\r\n\r\n"));
    }
    (head, signed.stream_key.unwrap())
}

/// Sends an upload's head, then the fragment followed by the tag `key` makes (after the switch to
/// the raw protocol when `raw`); returns the node's status and message, or 0 when the node closed
/// the connection before it had all of it.
async fn upload(
    addr: &str,
    head: &str,
    fragment: &[u8],
    layout: erasure::StripeLayout,
    key: &StreamKey,
    raw: bool,
) -> (u16, String) {
    let mut tagger = key.tagger(layout);
    tagger.update(fragment);
    let mut socket = TcpStream::connect(addr).await.unwrap();
    socket.write_all(head.as_bytes()).await.unwrap();
    if raw {
        let mut switched = vec![0u8; 0];
        while split_head(&switched).is_none() {
            let mut byte = [0u8; 1];
            socket.read_exact(&mut byte).await.unwrap();
            switched.push(byte[0]);
        }
        let (head, _) = split_head(&switched).unwrap();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    }
    // A node that finds a frame wrong refuses at once and closes: the rest cannot be sent.
    let sent = async {
        socket.write_all(fragment).await?;
        socket.write_all(&tagger.tag()).await
    };
    if let Err(e) = sent.await {
        return (0, format!("closed by the node while sending: {e}"));
    }
    if !raw {
        return read_answer(&mut socket).await;
    }
    let mut answer = String::new();
    socket.read_to_string(&mut answer).await.unwrap();
    let (status, message) = answer.split_once(' ').unwrap();
    (status.parse().unwrap(), message.to_string())
}

/// A fragment upload is kept only when the bytes end with the tag of its own call: a tag made
/// for another call (as an attacker replaying a captured tag would send) discards it with 403,
/// over HTTP and over the raw connection alike.
#[tokio::test(flavor = "multi_thread")]
async fn fragment_uploads_are_bound_to_their_call_by_the_tag() {
    let cluster = TestCluster::start();
    let (addr, secret) = cluster.first_node();
    let secret = ClusterSecret::new(secret);
    let client = NodeClient::new(secret.clone(), Duration::from_secs(10));
    let (node, _) = cluster.nodes().remove(0);
    let tmp = cluster.path().join(&node).join("fragments").join("tmp");
    let leftovers = || std::fs::read_dir(&tmp).map_or(0, |d| d.count());

    let newest = erasure::StripeLayout {
        size: 3 << 20,
        data_shards: 4,
        block_size: 256 << 10,
        frames: FrameFormat::NEWEST,
    };
    let oldest = erasure::StripeLayout {
        frames: FrameFormat::PositionFirst,
        ..newest
    };

    for (layout, raw) in [
        (newest, false),
        (newest, true),
        (oldest, false),
        (oldest, true),
    ] {
        let fragment = fragment_1(layout);
        let name = |what: &[u8]| [what, &[raw as u8, layout.frames.number()]].concat();
        let id = node_rpc::record::fragment_id(&[&name(b"forged")]);
        let (head, _) = fragment_upload(&secret, &id, layout, raw);
        let (_, other_key) = fragment_upload(&secret, &id, layout, raw);
        let (status, message) = upload(&addr, &head, &fragment, layout, &other_key, raw).await;
        assert_eq!(status, 403, "raw {raw}: {message}");
        common::wait_until(|| leftovers() == 0, "the refused upload's file removed").await;
        let missing = client
            .get_fragment(&addr, &id, 1, 0, layout.fragment_len())
            .await;
        assert!(matches!(&missing, Err(e) if e.is_not_found()), "raw {raw}");

        // Frames of one format uploaded as the other's are refused, and nothing is kept.
        let other = erasure::StripeLayout {
            frames: [newest, oldest][(layout == newest) as usize].frames,
            ..layout
        };
        let id = node_rpc::record::fragment_id(&[&name(b"other format")]);
        let (head, key) = fragment_upload(&secret, &id, other, raw);
        let (status, message) = upload(&addr, &head, &fragment, other, &key, raw).await;
        let refused = status / 100 == 4 || status == 0;
        assert!(refused, "raw {raw}, {other:?}: {status} {message}");
        common::wait_until(|| leftovers() == 0, "the refused upload's file removed").await;

        let id = node_rpc::record::fragment_id(&[&name(b"signed")]);
        let (head, key) = fragment_upload(&secret, &id, layout, raw);
        let (status, message) = upload(&addr, &head, &fragment, layout, &key, raw).await;
        assert_eq!(status, 200, "raw {raw}, {layout:?}: {message}");
    }
}

/// A throw-away CA and a certificate for 127.0.0.1 it signed (as the client tests make them), and
/// another CA that signed nothing here: (ca, cert, key, other ca).
fn make_certs(dir: &Path) -> (PathBuf, PathBuf, PathBuf, PathBuf) {
    let file = |name: &str| dir.join(name);
    std::fs::write(
        file("server.ext"),
        "basicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\n\
         subjectAltName=IP:127.0.0.1,DNS:localhost\n\
         authorityKeyIdentifier=keyid,issuer\n",
    )
    .unwrap();
    let ca = |name: &str| {
        vec![
            "req".to_string(),
            "-x509".into(),
            "-newkey".into(),
            "rsa:2048".into(),
            "-nodes".into(),
            "-days".into(),
            "3".into(),
            "-keyout".into(),
            format!("{name}.key"),
            "-out".into(),
            format!("{name}.pem"),
            "-subj".into(),
            format!("/CN=Tessera test {name}"),
            "-addext".into(),
            "basicConstraints=critical,CA:TRUE".into(),
            "-addext".into(),
            "keyUsage=critical,keyCertSign,cRLSign".into(),
        ]
    };
    let commands = [
        ca("ca"),
        ca("other-ca"),
        "req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1"
            .split(' ')
            .map(String::from)
            .collect(),
        "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3 \
         -extfile server.ext -out server.pem"
            .split_whitespace()
            .map(String::from)
            .collect(),
    ];
    for args in commands {
        let out = std::process::Command::new("openssl")
            .args(&args)
            .current_dir(dir)
            .output()
            .expect("running openssl");
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    }
    (
        file("ca.pem"),
        file("server.pem"),
        file("server.key"),
        file("other-ca.pem"),
    )
}

/// Nodes that serve TLS: the gateway reaches them with the cluster's CA (objects large enough to
/// go raw both ways, and small ones), a node client with that CA is answered, and clients that
/// trust another CA, or speak plain HTTP, are not.
#[tokio::test(flavor = "multi_thread")]
async fn nodes_serve_tls_that_only_the_clusters_ca_passes() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key, other_ca) = make_certs(certs.path());
    let arg = |p: &PathBuf| p.to_str().unwrap().to_string();
    let cluster = TestCluster::start_with(&[
        "--node-tls-cert",
        &arg(&cert),
        "--node-tls-key",
        &arg(&key),
        "--node-tls-ca",
        &arg(&ca),
    ]);
    let s3 = cluster.client();
    assert_eq!(s3.put("/tls", Vec::new()).await.status, 200);
    for (name, size) in [("small", 3000), ("large", 24 << 20)] {
        let data = random_bytes(size, size as u64);
        let path = format!("/tls/{name}");
        let put = s3.put(&path, data.clone()).await;
        assert_eq!(put.status, 200, "{}", put.text());
        let got = s3.get(&path).await;
        assert_eq!(got.status, 200, "{}", got.text());
        assert!(got.body[..] == data[..], "{name} reads back as written");
    }

    let (addr, secret) = cluster.first_node();
    let secret = ClusterSecret::new(secret);
    let timeout = Duration::from_secs(5);
    let trusting = NodeClient::with_tls(secret.clone(), timeout, tls::client_config(&ca).unwrap());
    trusting
        .health(&addr)
        .await
        .expect("the cluster's CA passes");
    // Large enough to go raw both ways, as the gateway's transfers above.
    let layout = erasure::StripeLayout {
        size: 8 << 20,
        data_shards: 4,
        block_size: 256 << 10,
        frames: FrameFormat::NEWEST,
    };
    let fragment = fragment_1(layout);
    let id = node_rpc::record::fragment_id(&[b"over tls"]);
    trusting
        .put_fragment(&addr, &id, 1, layout, full(fragment.clone()))
        .await
        .expect("a raw upload over TLS");
    let mut read = Vec::new();
    match trusting
        .get_fragment(&addr, &id, 1, 0, layout.fragment_len())
        .await
        .unwrap()
    {
        FragmentBody::Raw(mut io) => io.read_to_end(&mut read).await.unwrap(),
        FragmentBody::Http { .. } => panic!("a 2 MiB read takes a connection of its own"),
    };
    assert!(read == fragment, "the fragment reads back over TLS as sent");
    let other = tls::client_config(&other_ca).unwrap();
    let doubting = NodeClient::with_tls(secret.clone(), timeout, other);
    let refused = doubting.health(&addr).await;
    assert!(
        matches!(refused, Err(RpcError::Unreachable(_))),
        "another CA does not pass: {refused:?}"
    );
    let plain = NodeClient::new(secret, timeout).health(&addr).await;
    assert!(plain.is_err(), "plain HTTP is not served: {plain:?}");
}
