//! Object Lock where a client cannot watch it: every holder keeps a version's lock through a
//! holder that was down when the lock changed, a holder wiped and healed, and lifecycle
//! expiration, and a holder refuses on its own to purge a locked version. The S3 API of the lock
//! is tested through boto3 and the aws CLI (tests/clients/test_object_lock.py).

mod common;

use bytes::Bytes;
use common::{code, content_md5, err, random_bytes, S3Client, TestCluster, NODES};
use node_rpc::auth::ClusterSecret;
use node_rpc::client::NodeClient;
use node_rpc::object_lock::LockMode;
use node_rpc::protocol::PurgeRequest;
use node_rpc::record::{BucketId, ObjectRecord, VersionRef};
use std::time::{Duration, Instant};

/// Seconds in a lifecycle day on the test cluster.
const DAY: u64 = 2;

fn in_an_hour() -> String {
    (chrono::Utc::now() + chrono::Duration::hours(1))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// PUTs a COMPLIANCE-locked object; returns its version id.
async fn put_locked(s3: &S3Client, path: &str, data: Vec<u8>) -> String {
    let until = in_an_hour();
    let md5 = content_md5(&data);
    let put = s3
        .send(
            "PUT",
            path,
            &[
                ("x-amz-object-lock-mode", "COMPLIANCE"),
                ("x-amz-object-lock-retain-until-date", &until),
                ("content-md5", &md5),
            ],
            Bytes::from(data),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text());
    put.header("x-amz-version-id").unwrap().to_string()
}

/// Each node's record of a version of `key` (`None`: the node has none, or did not answer).
async fn records(
    cluster: &TestCluster,
    client: &NodeClient,
    bucket: &BucketId,
    key: &str,
    version: VersionRef,
) -> Vec<(String, Option<ObjectRecord>)> {
    let mut out = Vec::new();
    for node in NODES {
        let (addr, _) = cluster.node_addr(node);
        let record = client
            .object(&addr, bucket, key, Some(version))
            .await
            .ok()
            .and_then(|l| l.record);
        out.push((node.to_string(), record));
    }
    out
}

/// Whether every node's record of the version holds a COMPLIANCE retention and a legal hold.
fn all_locked(records: &[(String, Option<ObjectRecord>)]) -> bool {
    records.iter().all(|(_, r)| {
        r.as_ref().is_some_and(|r| {
            r.lock.retention.map(|r| r.mode) == Some(LockMode::Compliance)
                && r.lock.legal_hold == Some(true)
        })
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn every_holder_keeps_the_lock_through_outages_heals_and_lifecycle() {
    let mut cluster = TestCluster::start_with(&["--lifecycle-day-secs", &DAY.to_string()]);
    let s3 = cluster.client();
    common::create_lock_bucket(&s3, "/vault").await;
    // One object kept whole in its records, one erasure-coded into fragment files.
    let small = random_bytes(1000, 1);
    let large = random_bytes(3 << 20, 2);
    let objects = [("small", small.clone()), ("large", large.clone())];
    let mut ids = Vec::new();
    for (key, data) in &objects {
        ids.push(put_locked(&s3, &format!("/vault/{key}"), data.clone()).await);
    }

    // A holder down while the legal hold is set misses that revision of the version.
    cluster.kill("z2-n1");
    for ((key, _), id) in objects.iter().zip(&ids) {
        let body = "<LegalHold><Status>ON</Status></LegalHold>";
        let hold = s3
            .send(
                "PUT",
                &format!("/vault/{key}?legal-hold&versionId={id}"),
                &[("content-md5", &content_md5(body.as_bytes()))],
                Bytes::from(body),
            )
            .await;
        assert_eq!(hold.status, 200, "{}", hold.text());
    }
    cluster.restart("z2-n1");
    // And a holder wiped and healed has to get every record back from the others.
    cluster.wipe("z1-n1");
    let progress = common::heal(&s3, "z1-n1").await;
    assert_eq!(progress["errors"], 0, "{progress}");

    // A wiped node's system table fills again in the background: ask one that was never wiped.
    let (addr, secret) = cluster.node_addr("z3-n1");
    let client = NodeClient::new(ClusterSecret::new(secret), Duration::from_secs(10));
    let bucket = client
        .buckets(&addr)
        .await
        .unwrap()
        .into_iter()
        .find(|b| b.name == "vault" && !b.deleted)
        .expect("the bucket record")
        .id;
    for ((key, _), id) in objects.iter().zip(&ids) {
        let version = VersionRef::Id(id.parse().unwrap());
        let start = Instant::now();
        loop {
            let seen = records(&cluster, &client, &bucket, key, version).await;
            if all_locked(&seen) {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{key}: not every holder has the lock: {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // A holder asked directly, as a gateway that skipped its own check would, refuses too.
        let purge = PurgeRequest {
            bucket,
            key: key.to_string(),
            version,
            bypass_governance: true,
            replicate: None,
        };
        let refused = client.purge(&addr, &purge).await.unwrap_err();
        assert!(refused.is_locked(), "{refused}");
    }

    // Two other holders down: the healed and the rejoined ones serve, with the lock.
    cluster.kill("z1-n2");
    cluster.kill("z3-n2");
    for ((key, data), id) in objects.iter().zip(&ids) {
        let path = format!("/vault/{key}?versionId={id}");
        let got = s3.get(&path).await;
        assert!(got.body[..] == data[..], "{key}");
        assert_eq!(got.header("x-amz-object-lock-mode"), Some("COMPLIANCE"));
        assert_eq!(got.header("x-amz-object-lock-legal-hold"), Some("ON"));
        let delete = s3
            .send(
                "DELETE",
                &path,
                &[("x-amz-bypass-governance-retention", "true")],
                Bytes::new(),
            )
            .await;
        assert_eq!(code(&delete), err(403, "AccessDenied"), "{key}");
    }
    cluster.restart("z1-n2");
    cluster.restart("z3-n2");

    // Lifecycle expiration makes the current versions delete markers; the locked versions stay.
    let rules = "<LifecycleConfiguration><Rule><ID>all</ID><Filter><Prefix></Prefix></Filter>\
        <Status>Enabled</Status><Expiration><Days>1</Days></Expiration></Rule></LifecycleConfiguration>";
    let put = s3
        .send(
            "PUT",
            "/vault?lifecycle",
            &[("content-md5", &content_md5(rules.as_bytes()))],
            Bytes::from(rules),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text());
    for (key, _) in &objects {
        let start = Instant::now();
        while s3.head(&format!("/vault/{key}")).await.status != 404 {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{key} was not expired"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    for ((key, data), id) in objects.iter().zip(&ids) {
        let got = s3.get(&format!("/vault/{key}?versionId={id}")).await;
        assert!(got.body[..] == data[..], "{key} after expiration");
    }
}
