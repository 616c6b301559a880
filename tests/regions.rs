//! A region's side of replication: versions made in a peer region, applied through S3 with the
//! replication key and their own version, over real processes.

mod common;

use bytes::Bytes;
use common::{S3Client, TestCluster};
use futures::StreamExt;
use node_rpc::cluster::{PeerRegion, RegionConfig};
use node_rpc::protocol::ClusterSecret;
use node_rpc::record::Version;
use std::time::{SystemTime, UNIX_EPOCH};

/// The region the test cluster becomes: us-east-1 (number 1), with eu-west-1 (number 2) as its
/// peer. Nothing listens at the peer's endpoint: only the peer's requests matter here.
fn region() -> RegionConfig {
    RegionConfig {
        name: "us-east-1".into(),
        number: 1,
        replication_secret: ClusterSecret::new("a replication secret for tests".into()),
        peers: vec![PeerRegion {
            name: "eu-west-1".into(),
            number: 2,
            endpoint: "http://127.0.0.1:1".into(),
            ca_file: None,
        }],
        read_fallback: false,
    }
}

/// A cluster that is region `region()`, and a client signing as its peer's replication.
fn start_region() -> (TestCluster, S3Client) {
    let mut cluster = TestCluster::start();
    let region = region();
    let value = toml::Value::try_from(&region).unwrap();
    cluster.restart_with_in("gateway", &[("cluster", "region", Some(value))]);
    let peer = S3Client::new(
        &cluster.endpoint,
        &RegionConfig::replication_key_id("eu-west-1"),
        &region.replication_secret_key(),
    );
    (cluster, peer)
}

/// A version eu-west-1 could have made `offset_ms` from now.
fn peer_version(offset_ms: i64) -> Version {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let micros = now.as_micros() as i64 + offset_ms * 1000;
    Version {
        micros: micros as u64,
        salt: 0x0200_0001,
    }
}

async fn put_replica(
    s3: &S3Client,
    path: &str,
    version: Version,
    versioned: bool,
    body: &str,
) -> common::Reply {
    let (version, versioned) = (version.to_string(), versioned.to_string());
    let headers = [
        ("x-tessera-replica-version", version.as_str()),
        ("x-tessera-replica-versioned", versioned.as_str()),
    ];
    s3.send("PUT", path, &headers, Bytes::from(body.to_string()))
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_regions_versions_apply_with_their_own_version_and_read_as_replicas() {
    let (cluster, peer) = start_region();
    let s3 = cluster.client();
    assert_eq!(s3.put("/geo", Bytes::new()).await.status, 200);

    // A replica reads back with the REPLICA status; a local write is PENDING, as nothing
    // answers at its peer's endpoint.
    let first = peer_version(-5_000);
    let applied = put_replica(&peer, "/geo/k", first, false, "from eu").await;
    assert_eq!(applied.status, 200, "{}", applied.text());
    let got = s3.get("/geo/k").await;
    assert_eq!(got.text(), "from eu");
    assert_eq!(got.header("x-amz-replication-status"), Some("REPLICA"));
    assert_eq!(s3.put("/geo/k", "from us").await.status, 200);
    let got = s3.get("/geo/k").await;
    assert_eq!(got.text(), "from us");
    assert_eq!(got.header("x-amz-replication-status"), Some("PENDING"));

    // A replayed or older replica changes nothing; a newer one wins, as a local write would.
    assert_eq!(
        put_replica(&peer, "/geo/k", first, false, "from eu")
            .await
            .status,
        200
    );
    assert_eq!(s3.get("/geo/k").await.text(), "from us");
    let later = peer_version(5_000);
    assert_eq!(
        put_replica(&peer, "/geo/k", later, false, "later from eu")
            .await
            .status,
        200
    );
    assert_eq!(s3.get("/geo/k").await.text(), "later from eu");
    // Having seen a version 5 s ahead, this region's next write orders after it.
    assert_eq!(s3.put("/geo/k", "after").await.status, 200);
    assert_eq!(s3.get("/geo/k").await.text(), "after");

    // In a versioned bucket the version id is the same as in the region that made it, and a
    // replicated delete marker keeps its own too.
    assert_eq!(s3.put("/geo-v", Bytes::new()).await.status, 200);
    let versioning = "<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>";
    assert_eq!(
        common::put_xml(&s3, "/geo-v?versioning", versioning)
            .await
            .status,
        200
    );
    let version = peer_version(-1_000);
    let applied = put_replica(&peer, "/geo-v/doc", version, true, "v1").await;
    assert_eq!(applied.status, 200, "{}", applied.text());
    assert_eq!(
        applied.header("x-amz-version-id"),
        Some(version.to_string().as_str())
    );
    let by_id = s3.get(&format!("/geo-v/doc?versionId={version}")).await;
    assert_eq!(by_id.text(), "v1");
    assert_eq!(by_id.header("x-amz-replication-status"), Some("REPLICA"));
    let marker = peer_version(-500);
    let (marker_id, versioned) = (marker.to_string(), "true");
    let deleted = peer
        .send(
            "DELETE",
            "/geo-v/doc",
            &[
                ("x-tessera-replica-version", marker_id.as_str()),
                ("x-tessera-replica-versioned", versioned),
            ],
            Bytes::new(),
        )
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    assert_eq!(deleted.header("x-amz-version-id"), Some(marker_id.as_str()));
    let listing = s3.get("/geo-v?versions").await.text();
    assert!(
        listing.contains(&format!(
            "<DeleteMarker><Key>doc</Key><VersionId>{marker_id}</VersionId>"
        )),
        "{listing}"
    );
    assert_eq!(s3.get("/geo-v/doc").await.status, 404);
    assert_eq!(
        s3.get(&format!("/geo-v/doc?versionId={version}"))
            .await
            .text(),
        "v1"
    );

    // This region's versions carry its number.
    let local = s3.put("/geo-v/mine", "x").await;
    let id = local.header("x-amz-version-id").unwrap();
    assert_eq!(&id[16..18], "01", "version {id}");
}

#[tokio::test(flavor = "multi_thread")]
async fn only_a_peer_regions_replication_applies_replicas_and_it_only_reads_besides() {
    let (cluster, peer) = start_region();
    let region = region();
    let s3 = cluster.client();
    assert_eq!(s3.put("/guarded", Bytes::new()).await.status, 200);
    assert_eq!(s3.put("/guarded/k", "local").await.status, 200);
    let version = peer_version(60_000);

    // Not even the administrator may make a version of its choosing.
    let forged = put_replica(&s3, "/guarded/k", version, false, "forged").await;
    assert_eq!(forged.status, 403, "{}", forged.text());
    assert_eq!(forged.code(), "AccessDenied");

    // The replication key reads objects (a peer's reads that fall back) and writes nothing
    // but replicas.
    assert_eq!(peer.get("/guarded/k").await.text(), "local");
    for reply in [
        peer.put("/guarded/k", "plain").await,
        peer.delete("/guarded/k").await,
        peer.get("/guarded").await,
        peer.put("/another", Bytes::new()).await,
    ] {
        assert_eq!(reply.status, 403, "{}", reply.text());
    }
    // A region not among the peers, or the wrong secret, is not let in.
    for (id, secret) in [
        (
            RegionConfig::replication_key_id("ap-south-1"),
            region.replication_secret_key(),
        ),
        (
            RegionConfig::replication_key_id("eu-west-1"),
            "not the secret".to_string(),
        ),
    ] {
        let stranger = S3Client::new(&cluster.endpoint, &id, &secret);
        let reply = put_replica(&stranger, "/guarded/k", version, false, "forged").await;
        assert_eq!(reply.status, 403, "{}", reply.text());
    }
    assert_eq!(s3.get("/guarded/k").await.text(), "local");

    // A malformed replica version is refused before anything is written.
    let reply = peer
        .send(
            "PUT",
            "/guarded/k",
            &[
                ("x-tessera-replica-version", "not-a-version"),
                ("x-tessera-replica-versioned", "false"),
            ],
            Bytes::from_static(b"bad"),
        )
        .await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    // Half a replica is refused too, not taken for a plain write.
    let half = [("x-tessera-replica-versioned", "false")];
    let reply = s3
        .send("PUT", "/guarded/k", &half, Bytes::from_static(b"half"))
        .await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert_eq!(s3.get("/guarded/k").await.text(), "local");
}

/// Makes `cluster` region `name` (number `number`) with one peer region.
fn make_region(cluster: &mut TestCluster, name: &str, number: u8, peer: (&str, u8, &str)) {
    let region = RegionConfig {
        name: name.into(),
        number,
        replication_secret: region().replication_secret,
        peers: vec![PeerRegion {
            name: peer.0.into(),
            number: peer.1,
            endpoint: peer.2.into(),
            ca_file: None,
        }],
        read_fallback: false,
    };
    let value = toml::Value::try_from(&region).unwrap();
    let settings = [
        ("cluster", "region", Some(value)),
        ("gateway", "region", Some(name.into())),
    ];
    cluster.restart_with_in("gateway", &settings);
}

/// Runs a resync from `s3`'s region to `target` and waits for its end; returns its progress.
async fn resync(s3: &S3Client, bucket: &str, target: &str) -> serde_json::Value {
    let path = format!("/_tessera/replication/resync?bucket={bucket}&target={target}");
    let started = s3.send("POST", &path, &[], Bytes::new()).await;
    assert_eq!(started.status, 202, "{}", started.text());
    let begun = std::time::Instant::now();
    loop {
        let progress: serde_json::Value =
            serde_json::from_slice(&s3.get("/_tessera/replication/resync").await.body).unwrap();
        if progress["running"] == false {
            return progress;
        }
        assert!(
            begun.elapsed().as_secs() < 60,
            "resync still running: {progress}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Two clusters, and a client of each (both signing for us-east-1, each gateway's region until
/// `join` makes them regions): what is written before `join` is not queued for the peer region,
/// as in buckets whose replication is turned on late.
fn two_clusters() -> (TestCluster, TestCluster, S3Client, S3Client) {
    let (east, west) = (TestCluster::start(), TestCluster::start());
    let (s3, west_client) = (east.client(), west.client());
    (east, west, s3, west_client)
}

/// Makes the clusters regions us-east-1 and eu-west-1, each the other's peer; returns a client
/// of eu-west-1.
fn join(east: &mut TestCluster, west: &mut TestCluster) -> S3Client {
    let (east_url, west_url) = (east.endpoint.clone(), west.endpoint.clone());
    make_region(east, "us-east-1", 1, ("eu-west-1", 2, &west_url));
    make_region(west, "eu-west-1", 2, ("us-east-1", 1, &east_url));
    S3Client::in_region(
        &west_url,
        common::ACCESS_KEY,
        common::SECRET_KEY,
        "eu-west-1",
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resync_sends_a_peer_region_every_version_it_lacks_and_nothing_twice() {
    let (mut east, mut west, s3, there) = two_clusters();
    for bucket in ["/photos", "/docs"] {
        assert_eq!(s3.put(bucket, Bytes::new()).await.status, 200);
        assert_eq!(there.put(bucket, Bytes::new()).await.status, 200);
    }
    let versioning = "<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>";
    for client in [&s3, &there] {
        let reply = common::put_xml(client, "/docs?versioning", versioning).await;
        assert_eq!(reply.status, 200);
    }

    // West writes `older` before east does, and `newer` after: the later write wins in west.
    assert_eq!(there.put("/photos/older", "west, first").await.status, 200);
    let objects: Vec<(String, Vec<u8>)> = [0usize, 1_000, 60_000, 5_000_000]
        .iter()
        .enumerate()
        .map(|(i, &size)| {
            (
                format!("/photos/o{i}"),
                common::random_bytes(size, i as u64),
            )
        })
        .collect();
    for (key, data) in &objects {
        assert_eq!(s3.put(key, data.clone()).await.status, 200);
    }
    let headers = [
        ("content-type", "image/png"),
        ("x-amz-meta-camera", "x100"),
        ("x-amz-tagging", "trip=alps&year=2026"),
    ];
    let tagged = s3
        .send(
            "PUT",
            "/photos/tagged",
            &headers,
            Bytes::from_static(b"png"),
        )
        .await;
    assert_eq!(tagged.status, 200);
    assert_eq!(s3.put("/photos/older", "east, later").await.status, 200);
    assert_eq!(there.put("/photos/gone", "west's, older").await.status, 200);
    assert_eq!(s3.put("/photos/gone", "soon deleted").await.status, 200);
    assert_eq!(s3.delete("/photos/gone").await.status, 204);
    assert_eq!(s3.put("/photos/newer", "east, first").await.status, 200);
    assert_eq!(there.put("/photos/newer", "west, later").await.status, 200);
    assert_eq!(there.put("/photos/west-only", "mine").await.status, 200);
    for body in ["v1", "v2"] {
        assert_eq!(s3.put("/docs/report", body).await.status, 200);
    }
    assert_eq!(s3.delete("/docs/report").await.status, 204);

    // A locked version stays locked in the peer region.
    for client in [&s3, &there] {
        let lock = [("x-amz-bucket-object-lock-enabled", "true")];
        let created = client.send("PUT", "/vault", &lock, Bytes::new()).await;
        assert_eq!(created.status, 200, "{}", created.text());
    }
    let until = (chrono::Utc::now() + chrono::Duration::hours(1))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let md5 = common::content_md5(b"evidence");
    let headers = [
        ("x-amz-object-lock-mode", "COMPLIANCE"),
        ("x-amz-object-lock-retain-until-date", until.as_str()),
        ("x-amz-object-lock-legal-hold", "ON"),
        ("content-md5", md5.as_str()),
    ];
    let locked = s3
        .send(
            "PUT",
            "/vault/record",
            &headers,
            Bytes::from_static(b"evidence"),
        )
        .await;
    assert_eq!(locked.status, 200, "{}", locked.text());
    let version = locked.header("x-amz-version-id").unwrap().to_string();

    // Replication is turned on only now: nothing written so far was queued for the peer.
    let there = join(&mut east, &mut west);
    // Sent: four objects, the tagged one, `older` and `gone`'s tombstone (not `newer`, which
    // west wrote later); the two versions and the delete marker of `report`.
    for (bucket, sent) in [("photos", 7), ("docs", 3)] {
        let progress = resync(&s3, bucket, "eu-west-1").await;
        assert_eq!(progress["errors"], 0, "{progress}");
        assert_eq!(progress["versions_sent"], sent, "{progress}");
    }
    for (key, data) in &objects {
        let got = there.get(key).await;
        assert_eq!(got.status, 200, "{key}: {}", got.text());
        assert!(got.body[..] == data[..], "{key}: bytes differ");
        assert_eq!(got.header("etag"), s3.head(key).await.header("etag"));
        assert_eq!(got.header("x-amz-replication-status"), Some("REPLICA"));
    }
    let got = there.get("/photos/tagged").await;
    assert_eq!(got.header("content-type"), Some("image/png"));
    assert_eq!(got.header("x-amz-meta-camera"), Some("x100"));
    let tags = there.get("/photos/tagged?tagging").await.text();
    assert!(
        tags.contains("<Key>trip</Key><Value>alps</Value>"),
        "{tags}"
    );
    assert_eq!(there.get("/photos/older").await.text(), "east, later");
    assert_eq!(there.get("/photos/newer").await.text(), "west, later");
    assert_eq!(there.get("/photos/west-only").await.text(), "mine");
    assert_eq!(
        there.get("/photos/gone").await.status,
        404,
        "the later delete wins"
    );
    let east_versions = common::listed_versions(&s3.get("/docs?versions").await.text());
    assert_eq!(east_versions.len(), 3, "two versions and a delete marker");
    assert_eq!(
        common::listed_versions(&there.get("/docs?versions").await.text()),
        east_versions,
        "the same version ids in both regions"
    );

    let progress = resync(&s3, "vault", "eu-west-1").await;
    assert_eq!(progress["versions_sent"], 1, "{progress}");
    let head = there.head("/vault/record").await;
    assert_eq!(head.header("x-amz-object-lock-mode"), Some("COMPLIANCE"));
    assert_eq!(head.header("x-amz-object-lock-legal-hold"), Some("ON"));
    let purge = there
        .delete(&format!("/vault/record?versionId={version}"))
        .await;
    assert_eq!(purge.status, 403, "{}", purge.text());

    // Run again: the peer lacks nothing now.
    for bucket in ["photos", "docs", "vault"] {
        let progress = resync(&s3, bucket, "eu-west-1").await;
        assert_eq!(progress["versions_sent"], 0, "{progress}");
        assert_eq!(progress["errors"], 0, "{progress}");
    }
}

/// Resync throughput between two regions on this machine, for 4 KiB and 64 MiB objects:
/// `cargo test --release --test regions -- --ignored --nocapture` (figures in
/// docs/performance.md).
#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn resync_throughput() {
    let (mut east, mut west, s3, there) = two_clusters();
    let workloads = [("small", 2_000u64, 4_096usize), ("large", 16, 64 << 20)];
    for (bucket, count, size) in workloads {
        for client in [&s3, &there] {
            assert_eq!(
                client.put(&format!("/{bucket}"), Bytes::new()).await.status,
                200
            );
        }
        let data = Bytes::from(common::random_bytes(size, count));
        let puts = futures::stream::iter(0..count).map(|i| {
            let (s3, data) = (&s3, data.clone());
            async move { s3.put(&format!("/{bucket}/o{i:05}"), data).await.status }
        });
        let statuses: Vec<u16> = puts.buffer_unordered(16).collect().await;
        assert!(statuses.iter().all(|&s| s == 200));
    }
    join(&mut east, &mut west);
    for (bucket, count, size) in workloads {
        let started = std::time::Instant::now();
        let progress = resync(&s3, bucket, "eu-west-1").await;
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(progress["errors"], 0, "{progress}");
        assert_eq!(progress["versions_sent"], count, "{progress}");
        eprintln!(
            "RESYNC {count} objects of {size} B: {secs:.1} s, {:.0} objects/s, {:.0} MiB/s",
            count as f64 / secs,
            (count * size as u64) as f64 / secs / 1_048_576.0
        );
    }
}
