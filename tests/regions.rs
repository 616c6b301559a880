//! A region's side of replication: versions made in a peer region, applied through S3 with the
//! replication key and their own version, over real processes.

mod common;

use bytes::Bytes;
use common::{S3Client, TestCluster};
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
        }],
    }
}

/// A cluster that is region `region()`, and a client signing as its peer's replication.
fn start_region() -> (TestCluster, S3Client) {
    let mut cluster = TestCluster::start();
    let region = region();
    let value = toml::Value::try_from(&region).unwrap();
    cluster.restart_with_in("gateway", "cluster", "region", Some(value));
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

    // A replica reads back with the REPLICA status; a local write has none.
    let first = peer_version(-5_000);
    let applied = put_replica(&peer, "/geo/k", first, false, "from eu").await;
    assert_eq!(applied.status, 200, "{}", applied.text());
    let got = s3.get("/geo/k").await;
    assert_eq!(got.text(), "from eu");
    assert_eq!(got.header("x-amz-replication-status"), Some("REPLICA"));
    assert_eq!(s3.put("/geo/k", "from us").await.status, 200);
    let got = s3.get("/geo/k").await;
    assert_eq!(got.text(), "from us");
    assert_eq!(got.header("x-amz-replication-status"), None);

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
async fn only_a_peer_regions_replication_applies_replicas_and_it_does_nothing_else() {
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

    // The replication key reads nothing and writes nothing but replicas.
    for reply in [
        peer.get("/guarded/k").await,
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
    assert_eq!(s3.get("/guarded/k").await.text(), "local");
}
