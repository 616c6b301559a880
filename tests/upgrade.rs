//! Upgrades keep data: the nodes' data dirs of a cluster written by an earlier release (kept in
//! `tests/fixtures/`, one archive per on-disk format) open and read back in full with this one.
//!
//! The archive of the current format is made by the ignored test `write_fixture` (run it with
//! `cargo test --release --test upgrade -- --ignored write_fixture`); an archive, once committed,
//! is never made again: it stands for what clusters in the field hold.

mod common;

use bytes::Bytes;
use common::{put_xml, random_bytes, xml_values, TestCluster, NODES};
use erasure::FrameFormat;
use node_rpc::auth::ClusterSecret;
use node_rpc::record::BucketId;
use node_rpc::NodeClient;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Written by the release before the store recorded its format (2026-12-03, faac53e), which the
/// store now calls format 1.
const FORMAT_1: &str = "store-format-1.tar.gz";
/// Written by the release that made format 2 (2026-12-05), once its gateway wrote frames of
/// format 2: the parts in fragment files and inline are of that format.
const FORMAT_2: &str = "store-format-2.tar.gz";
/// Written by the release that made format 3 (2026-12-05), once its gateway wrote frames of
/// format 3.
const FORMAT_3: &str = "store-format-3.tar.gz";
/// Written by the release that made format 4 (2026-12-07), which marks keys with purged
/// versions; its data is that of format 3.
const FORMAT_4: &str = "store-format-4.tar.gz";
/// The fixture `write_fixture` makes: that of the current format.
const CURRENT: &str = FORMAT_4;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Bytes that show where they were cut from: each 16-byte line holds its own offset.
fn lined(len: usize) -> Vec<u8> {
    let text: String = (0..len.div_ceil(16))
        .map(|i| format!("{:015}\n", i * 16))
        .collect();
    text.into_bytes()[..len].to_vec()
}

/// The objects of the plain bucket, one per way an object is kept: whole copies (up to 4 KiB in
/// a dev cluster of format 1's release; since then such objects are coded 2+4), fragments inside
/// the records (up to 64 KiB) and fragment files.
fn plain_objects() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("whole/tiny.txt", b"kept as whole copies\n".to_vec()),
        ("inline/20k", random_bytes(20_000, 7)),
        ("files/300k", lined(300_000)),
    ]
}

/// The versions of `doc` in the versioned bucket, oldest first; a delete marker came after them.
fn doc_versions() -> Vec<Vec<u8>> {
    vec![b"first".to_vec(), random_bytes(30_000, 11), lined(100_000)]
}

const PLAIN: &str = "plain";
const VERSIONED: &str = "history";
const META: (&str, &str) = ("x-amz-meta-origin", "release 2026-12-03");
const TAGS: &str = "kind=fixture";

/// Writes the objects the fixture holds to a fresh cluster, stops it, and archives its nodes'
/// data dirs (without RocksDB's logs) as the fixture of the current format.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "makes the fixture of a new on-disk format; run once, then commit the archive"]
async fn write_fixture() {
    let cluster = TestCluster::start();
    let s3 = cluster.client();
    // New parts take the newest frame format once the gateway has heard every node report it.
    let start = std::time::Instant::now();
    while frame_format_written(&s3).await != u64::from(FrameFormat::NEWEST.number()) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no newest frames"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for bucket in [PLAIN, VERSIONED] {
        assert_eq!(
            s3.put(&format!("/{bucket}"), Bytes::new()).await.status,
            200
        );
    }
    for (key, body) in plain_objects() {
        let headers = [
            META,
            ("content-type", "text/plain"),
            ("x-amz-tagging", TAGS),
        ];
        let reply = s3
            .send("PUT", &format!("/{PLAIN}/{key}"), &headers, body.into())
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let body = "<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>";
    let reply = put_xml(&s3, &format!("/{VERSIONED}?versioning"), body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    for body in doc_versions() {
        assert_eq!(s3.put(&format!("/{VERSIONED}/doc"), body).await.status, 200);
    }
    assert_eq!(s3.delete(&format!("/{VERSIONED}/doc")).await.status, 204);
    let mut cluster = cluster;
    // The cluster's folder outlives it: the processes stop, their data stays to be archived.
    let dir = std::mem::replace(&mut cluster.dir, tempfile::tempdir().expect("temp dir"));
    drop(cluster);
    let archive = fixture(&format!("new-{CURRENT}"));
    let status = Command::new("tar")
        .arg("czf")
        .arg(&archive)
        .arg("-C")
        .arg(dir.path())
        .args(["--exclude=LOG*", "--exclude=LOCK", "--exclude=pid"])
        .args(NODES)
        .status()
        .expect("tar");
    assert!(status.success());
    eprintln!("wrote {}", archive.display());
}

/// Starts a dev cluster whose nodes open the data dirs of a fixture.
fn cluster_from(name: &str) -> TestCluster {
    let dir = tempfile::tempdir().expect("temp dir");
    let status = Command::new("tar")
        .arg("xzf")
        .arg(fixture(name))
        .arg("-C")
        .arg(dir.path())
        .status()
        .expect("tar");
    assert!(status.success(), "unpacking {name}");
    TestCluster::start_in(dir, &[])
}

/// (kind, version id) of the entries of a ListObjectVersions answer, in order.
fn versions_of(listing: &str) -> Vec<(&'static str, String)> {
    let kinds = [
        ("<Version>", "</Version>", "version"),
        ("<DeleteMarker>", "</DeleteMarker>", "marker"),
    ];
    let mut out = Vec::new();
    let mut rest = listing;
    loop {
        let next = kinds
            .iter()
            .filter_map(|&(open, close, kind)| rest.find(open).map(|at| (at, close, kind)))
            .min_by_key(|(at, ..)| *at);
        let Some((at, close, kind)) = next else {
            return out;
        };
        let end = at + rest[at..].find(close).expect("a closed entry");
        out.push((kind, xml_values(&rest[at..end], "VersionId")[0].clone()));
        rest = &rest[end..];
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_written_in_format_1_reads_back_in_full() {
    reads_back_in_full(FORMAT_1, FrameFormat::PositionFirst).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_written_in_format_2_reads_back_in_full() {
    reads_back_in_full(FORMAT_2, FrameFormat::PositionLast).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_written_in_format_3_reads_back_in_full() {
    reads_back_in_full(FORMAT_3, FrameFormat::Checksummed).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_written_in_format_4_reads_back_in_full() {
    reads_back_in_full(FORMAT_4, FrameFormat::Checksummed).await;
}

/// The format new parts are written in, as the gateway's status gives it.
async fn frame_format_written(s3: &common::S3Client) -> u64 {
    let status = s3.get("/_tessera/status").await;
    let status: serde_json::Value = serde_json::from_slice(&status.body).unwrap();
    status["frame_format"].as_u64().unwrap_or(0)
}

/// Starts a cluster on the fixture `name`, whose parts in fragment files have frames of `frames`,
/// and reads back everything it holds, then writes beside it.
async fn reads_back_in_full(name: &str, frames: FrameFormat) {
    let cluster = cluster_from(name);
    let s3 = cluster.client();
    assert_eq!(s3.head(&format!("/{PLAIN}")).await.status, 200);

    for (key, body) in plain_objects() {
        let reply = s3.get(&format!("/{PLAIN}/{key}")).await;
        assert_eq!(reply.status, 200, "{key}: {}", reply.text());
        assert!(reply.body == body, "{key}: the bytes read back differ");
        assert_eq!(reply.headers["content-type"], "text/plain");
        assert_eq!(reply.headers[META.0], META.1);
        let tags = s3.get(&format!("/{PLAIN}/{key}?tagging")).await;
        assert_eq!(xml_values(&tags.text(), "Value"), ["fixture"], "{key}");
        let range = s3
            .send(
                "GET",
                &format!("/{PLAIN}/{key}"),
                &[("range", "bytes=5-9")],
                Bytes::new(),
            )
            .await;
        assert_eq!(range.status, 206);
        assert_eq!(&range.body[..], &body[5..10]);
    }

    // The versioned bucket: its setting, every version of `doc` and the delete marker on top.
    let versioning = s3.get(&format!("/{VERSIONED}?versioning")).await;
    assert_eq!(xml_values(&versioning.text(), "Status"), ["Enabled"]);
    assert_eq!(s3.get(&format!("/{VERSIONED}/doc")).await.status, 404);
    let listing = s3.get(&format!("/{VERSIONED}?versions")).await;
    let versions = versions_of(&listing.text());
    let kinds: Vec<&str> = versions.iter().map(|(kind, _)| *kind).collect();
    assert_eq!(kinds, ["marker", "version", "version", "version"]);
    for ((_, id), body) in versions[1..].iter().zip(doc_versions().into_iter().rev()) {
        let reply = s3.get(&format!("/{VERSIONED}/doc?versionId={id}")).await;
        assert_eq!(reply.status, 200, "{id}: {}", reply.text());
        assert!(
            reply.body == body,
            "version {id}: the bytes read back differ"
        );
    }

    // And the upgraded cluster takes new writes beside the old ones, in the newest frame format
    // once the gateway has heard every node report it, while the old ones keep theirs.
    let client = node_client(&cluster);
    let bucket = bucket_id(&cluster, &client, PLAIN).await;
    let start = std::time::Instant::now();
    loop {
        let reply = s3.put(&format!("/{PLAIN}/new"), lined(200_000)).await;
        assert_eq!(reply.status, 200);
        if frame_formats(&cluster, &client, &bucket, "new").await == [FrameFormat::NEWEST; 6] {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no newest frames"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let reply = s3.get(&format!("/{PLAIN}/new")).await;
    assert!(reply.status == 200 && reply.body == lined(200_000));
    let newest = FrameFormat::NEWEST.number();
    assert_eq!(frame_format_written(&s3).await, u64::from(newest));
    let status = s3.get("/_tessera/status").await;
    let status: serde_json::Value = serde_json::from_slice(&status.body).unwrap();
    for node in status["nodes"].as_array().unwrap() {
        assert_eq!(
            node["frame_formats"],
            serde_json::json!(FrameFormat::known()),
            "{node}"
        );
    }
    for key in ["files/300k", "inline/20k"] {
        let old = frame_formats(&cluster, &client, &bucket, key).await;
        assert_eq!(old, [frames; 6], "{key}");
    }
    let listing = s3.get(&format!("/{PLAIN}?list-type=2")).await;
    let mut keys = xml_values(&listing.text(), "Key");
    keys.sort();
    assert_eq!(keys, ["files/300k", "inline/20k", "new", "whole/tiny.txt"]);

    // Each node's scrubber checks the fragment files of both formats and finds them sound.
    for node in NODES {
        let (addr, _) = cluster.node_addr(node);
        let before = client.health(&addr).await.unwrap().scrub.passes;
        client.start_scrub(&addr).await.unwrap();
        let start = std::time::Instant::now();
        let scrub = loop {
            let scrub = client.health(&addr).await.unwrap().scrub;
            if scrub.passes > before && !scrub.running {
                break scrub;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "{node}: no pass");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(scrub.files_checked >= 2, "{node}: {scrub:?}");
        assert_eq!((scrub.corrupt, scrub.missing), (0, 0), "{node}: {scrub:?}");
    }
}

fn node_client(cluster: &TestCluster) -> NodeClient {
    let (_, secret) = cluster.first_node();
    NodeClient::new(ClusterSecret::new(secret), Duration::from_secs(10))
}

async fn bucket_id(cluster: &TestCluster, client: &NodeClient, name: &str) -> BucketId {
    let (addr, _) = cluster.first_node();
    let buckets = client.buckets(&addr).await.unwrap();
    let bucket = buckets.into_iter().find(|b| b.name == name && !b.deleted);
    bucket.expect("the bucket's record").id
}

/// The frame format of `key`'s first part in each node's record of it.
async fn frame_formats(
    cluster: &TestCluster,
    client: &NodeClient,
    bucket: &BucketId,
    key: &str,
) -> Vec<FrameFormat> {
    let mut formats = Vec::new();
    for node in NODES {
        let (addr, _) = cluster.node_addr(node);
        let lookup = client.object(&addr, bucket, key, None).await.unwrap();
        let record = lookup.record.expect("every node holds the key");
        formats.push(record.parts[0].frames);
    }
    formats
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_refuses_a_data_dir_in_a_newer_format() {
    let mut cluster = cluster_from(FORMAT_1);
    let node = NODES[0];
    let recorded = cluster.path().join(node).join("format");
    let text = std::fs::read_to_string(&recorded).expect("the node recorded its format");
    assert_eq!(
        text, "tessera-store-format 4\n",
        "recorded as the format it now holds"
    );
    cluster.kill(node);
    std::fs::write(&recorded, "tessera-store-format 99\n").unwrap();
    let config = cluster.path().join("config").join(format!("{node}.toml"));
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .arg("server")
        .arg("--config")
        .arg(&config)
        .output()
        .expect("running the node");
    assert!(!out.status.success(), "the node started on format 99");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("store format 99") && stderr.contains("reads formats 1 to 4"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(&recorded).unwrap(),
        "tessera-store-format 99\n"
    );
}
