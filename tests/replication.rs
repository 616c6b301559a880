//! Cross-region replication as users see it, over `tessera dev --regions 2` (us-east-1 and
//! eu-west-1, each three zones of two nodes, real processes): every change made in one region
//! reaches the other, through a partition too, and the lag is visible while it does.

mod common;

use bytes::Bytes;
use common::{code, content_md5, err, proxy::Mode, S3Client, TestCluster};
use std::time::{Duration, Instant};

const EAST: &str = "us-east-1";
const WEST: &str = "eu-west-1";

/// The link from `s3`'s region to `target`, as `GET /_tessera/replication` shows it.
async fn link(s3: &S3Client, target: &str) -> serde_json::Value {
    let reply = s3.get("/_tessera/replication").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let status: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    let links = status["links"].as_array().unwrap();
    (links.iter())
        .find(|l| l["target"] == target)
        .unwrap_or_else(|| panic!("no link to {target}: {status}"))
        .clone()
}

/// Polls `check` until it holds or `limit` passes (then fails, saying `what`).
async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let start = Instant::now();
    loop {
        match check().await {
            Ok(()) => return,
            Err(why) if start.elapsed() > limit => panic!("{what}: {why}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Waits until `s3`'s region has nothing left to send `target`, as counted after the call.
async fn drained(s3: &S3Client, target: &str, limit: Duration) {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    eventually(limit, "the backlog did not drain", || async {
        let link = link(s3, target).await;
        let counted = link["counted_unix_millis"].as_u64() > Some(since);
        match counted && link["backlog_entries"] == 0 && link["oldest_pending_secs"].is_null() {
            true => Ok(()),
            false => Err(link.to_string()),
        }
    })
    .await;
}

/// Waits until `s3`'s gateway drains the link to the west (holds its lease).
async fn draining(s3: &S3Client, limit: Duration) {
    eventually(limit, "draining", || async {
        match link(s3, WEST).await["draining"] == true {
            true => Ok(()),
            false => Err("not yet".into()),
        }
    })
    .await;
}

/// (key, version id, whether a delete marker) of every version in a bucket, sorted.
async fn versions(s3: &S3Client, bucket: &str) -> Vec<(String, String, bool)> {
    common::listed_versions(&s3.get(&format!("/{bucket}?versions")).await.text())
}

/// Creates a bucket in the first region, with versioning if asked, and waits until the others
/// have it (bucket records replicate).
async fn bucket_everywhere(regions: &[&S3Client], bucket: &str, versioned: bool) {
    let created = regions[0].put(&format!("/{bucket}"), Bytes::new()).await;
    assert_eq!(created.status, 200, "{}", created.text());
    if versioned {
        let body = "<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>";
        let reply = common::put_xml(regions[0], &format!("/{bucket}?versioning"), body).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    for s3 in &regions[1..] {
        eventually(
            Duration::from_secs(20),
            "the bucket in the other region",
            || async {
                let status = s3.get(&format!("/{bucket}?versioning")).await.text();
                match status.contains("<Status>Enabled</Status>") == versioned {
                    true => Ok(()),
                    false => Err(status),
                }
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_change_reaches_the_other_region_and_both_converge_after_a_partition() {
    let mut cluster = TestCluster::start_regions(2);
    let (east, west) = (cluster.client_in(EAST), cluster.client_in(WEST));
    bucket_everywhere(&[&east, &west], "photos", false).await;
    bucket_everywhere(&[&east, &west], "docs", true).await;

    // A PUT in one region reads back from the other, as a replica; the source says COMPLETED
    // once the other region has it (PENDING until then).
    let data = common::random_bytes(300_000, 1);
    let put = east.put("/photos/beach.jpg", data.clone()).await;
    assert_eq!(put.status, 200, "{}", put.text());
    let status = east.head("/photos/beach.jpg").await;
    let first = status
        .header("x-amz-replication-status")
        .unwrap()
        .to_string();
    assert!(first == "PENDING" || first == "COMPLETED", "{first}");
    eventually(
        Duration::from_secs(20),
        "the object in eu-west-1",
        || async {
            let got = west.get("/photos/beach.jpg").await;
            match got.status == 200 && got.body[..] == data[..] {
                true => Ok(()),
                false => Err(format!("{} {}", got.status, got.text().len())),
            }
        },
    )
    .await;
    let copy = west.head("/photos/beach.jpg").await;
    assert_eq!(copy.header("x-amz-replication-status"), Some("REPLICA"));
    assert_eq!(copy.header("etag"), put.header("etag"));
    eventually(
        Duration::from_secs(10),
        "COMPLETED in us-east-1",
        || async {
            let head = east.head("/photos/beach.jpg").await;
            match head.header("x-amz-replication-status") {
                Some("COMPLETED") => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;

    // Versions, a delete marker, a purge and a tag change made in west reach east, with the
    // same version ids.
    let mut ids = Vec::new();
    for body in ["v1", "v2", "v3"] {
        let put = west.put("/docs/report", body).await;
        ids.push(put.header("x-amz-version-id").unwrap().to_string());
    }
    assert_eq!(west.delete("/docs/report").await.status, 204);
    let purge = west
        .delete(&format!("/docs/report?versionId={}", ids[0]))
        .await;
    assert_eq!(purge.status, 204, "{}", purge.text());
    let tagging =
        "<Tagging><TagSet><Tag><Key>state</Key><Value>final</Value></Tag></TagSet></Tagging>";
    let tag_path = format!("/docs/report?tagging&versionId={}", ids[2]);
    assert_eq!(common::put_xml(&west, &tag_path, tagging).await.status, 200);
    drained(&west, EAST, Duration::from_secs(30)).await;
    let here = versions(&west, "docs").await;
    assert_eq!(here.len(), 3, "two versions and a delete marker: {here:?}");
    assert_eq!(versions(&east, "docs").await, here);
    let tags = east.get(&tag_path).await.text();
    assert!(tags.contains("<Value>final</Value>"), "{tags}");

    // Cut the link both ways, and write in both regions: the same keys, deletes, a purge.
    cluster.select(EAST);
    let east_to_west = cluster.proxy_peer(WEST).await;
    cluster.select(WEST);
    let west_to_east = cluster.proxy_peer(EAST).await;
    east_to_west.set(Mode::Refuse);
    west_to_east.set(Mode::Refuse);
    for i in 0..20 {
        let key = format!("/photos/k{i:02}");
        assert_eq!(east.put(&key, format!("east {i}")).await.status, 200);
        assert_eq!(west.put(&key, format!("west {i}")).await.status, 200);
        let versioned = format!("/docs/d{i:02}");
        assert_eq!(west.put(&versioned, format!("west {i}")).await.status, 200);
        assert_eq!(east.put(&versioned, format!("east {i}")).await.status, 200);
    }
    assert_eq!(east.delete("/photos/k03").await.status, 204);
    assert_eq!(west.delete("/photos/beach.jpg").await.status, 204);
    let purged = east.put("/docs/d05", "east, purged").await;
    let purged = purged.header("x-amz-version-id").unwrap().to_string();
    let purge = east.delete(&format!("/docs/d05?versionId={purged}")).await;
    assert_eq!(purge.status, 204);
    // Both regions tag one version differently: once each has the other's, the same tags win.
    for (s3, value) in [(&east, "east"), (&west, "west")] {
        let tagging = format!(
            "<Tagging><TagSet><Tag><Key>by</Key><Value>{value}</Value></Tag></TagSet></Tagging>"
        );
        assert_eq!(common::put_xml(s3, &tag_path, &tagging).await.status, 200);
    }

    // The lag shows: a backlog, an oldest entry that ages, a link that is down.
    eventually(
        Duration::from_secs(20),
        "the backlog during the partition",
        || async {
            let link = link(&east, WEST).await;
            let grows = link["backlog_entries"].as_u64() >= Some(22)
                && link["oldest_pending_secs"].as_f64() > Some(1.0)
                && link["up"] == false;
            match grows {
                true => Ok(()),
                false => Err(link.to_string()),
            }
        },
    )
    .await;
    let metrics = cluster_metrics(&cluster, EAST).await;
    assert!(
        metrics
            .contains("tessera_replication_link_up{source=\"us-east-1\",target=\"eu-west-1\"} 0"),
        "{metrics}"
    );
    let pending = east.head("/photos/k00").await;
    assert_eq!(pending.header("x-amz-replication-status"), Some("PENDING"));

    // The link returns: both drain, and every key reads the same from both regions.
    east_to_west.set(Mode::Pass);
    west_to_east.set(Mode::Pass);
    drained(&east, WEST, Duration::from_secs(60)).await;
    drained(&west, EAST, Duration::from_secs(60)).await;
    for i in 0..20 {
        for bucket in ["photos", "docs"] {
            let key = match bucket {
                "photos" => format!("/photos/k{i:02}"),
                _ => format!("/docs/d{i:02}"),
            };
            let (a, b) = (east.get(&key).await, west.get(&key).await);
            let seen = |r: &common::Reply| match r.status {
                200 => (200, r.text()),
                status => (status, r.code()),
            };
            assert_eq!(seen(&a), seen(&b), "{key}");
        }
    }
    assert_eq!(east.get("/photos/k03").await.status, 404);
    assert_eq!(east.get("/photos/beach.jpg").await.status, 404);
    assert_eq!(west.get("/photos/beach.jpg").await.status, 404);
    // The later write of each key won in both regions: west's in photos, east's in docs.
    assert_eq!(west.get("/photos/k07").await.text(), "west 7");
    assert_eq!(west.get("/docs/d07").await.text(), "east 7");
    let docs = versions(&east, "docs").await;
    assert_eq!(versions(&west, "docs").await, docs);
    assert!(!docs.iter().any(|(_, id, _)| *id == purged), "the purge");
    let (east_tags, west_tags) = (
        east.get(&tag_path).await.text(),
        west.get(&tag_path).await.text(),
    );
    assert_eq!(east_tags, west_tags);
    assert!(west_tags.contains("<Value>west</Value>"), "{west_tags}");
    assert_eq!(link(&east, WEST).await["up"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_read_fallback_a_region_serves_what_it_has_not_received_yet() {
    let mut cluster = TestCluster::start_regions_with(2, &["--read-fallback"]);
    let (east, west) = (cluster.client_in(EAST), cluster.client_in(WEST));
    bucket_everywhere(&[&east, &west], "docs", true).await;
    // What east writes stays there: its link to west is cut.
    cluster.select(EAST);
    let east_to_west = cluster.proxy_peer(WEST).await;
    east_to_west.set(Mode::Refuse);
    let data = common::random_bytes(300_000, 7);
    let crc = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(crc32fast::hash(&data).to_be_bytes())
    };
    let checked = [("x-amz-checksum-crc32", crc.as_str())];
    let put = east
        .send("PUT", "/docs/fresh", &checked, data.clone().into())
        .await;
    assert_eq!(put.status, 200, "{}", put.text());
    let version = put.header("x-amz-version-id").unwrap().to_string();
    let etag = put.header("etag").unwrap().to_string();
    assert_eq!(versions(&west, "docs").await, [], "west has nothing yet");

    // West answers from east: the object, a range, a HEAD, the version by id, a condition.
    let got = west.get("/docs/fresh").await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert!(got.body[..] == data[..]);
    assert_eq!(got.header("x-tessera-read-from"), Some(EAST));
    assert_eq!(got.header("x-amz-version-id"), Some(version.as_str()));
    assert_eq!(got.header("x-tessera-version"), None);
    let range = west
        .send(
            "GET",
            "/docs/fresh",
            &[("range", "bytes=1000-1999")],
            Bytes::new(),
        )
        .await;
    assert_eq!(range.status, 206);
    assert!(range.body[..] == data[1000..2000]);
    let headers = [("x-amz-checksum-mode", "ENABLED")];
    let path = format!("/docs/fresh?versionId={version}");
    let head = west.send("HEAD", &path, &headers, Bytes::new()).await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("x-amz-checksum-crc32"), Some(crc.as_str()));
    assert_eq!(head.header("content-length"), Some("300000"));
    assert_eq!(head.header("etag"), Some(etag.as_str()));
    let unchanged = west
        .send(
            "GET",
            "/docs/fresh",
            &[("if-none-match", &etag)],
            Bytes::new(),
        )
        .await;
    assert_eq!(unchanged.status, 304);
    // What no region has is still missing, and other operations do not fall back.
    assert_eq!(
        common::code(&west.get("/docs/nowhere").await),
        common::err(404, "NoSuchKey")
    );
    let tags = west.get("/docs/fresh?tagging").await;
    assert_eq!(tags.status, 404, "{}", tags.text());

    // A peer that is down is not waited for, once its link is seen down.
    cluster.kill("gateway");
    eventually(Duration::from_secs(20), "the link seen down", || async {
        match link(&west, EAST).await["up"] == false {
            true => Ok(()),
            false => Err("up".into()),
        }
    })
    .await;
    let asked = Instant::now();
    assert_eq!(west.get("/docs/fresh").await.status, 404);
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );

    // Once the link returns, the object arrives and is served from west itself.
    cluster.restart("gateway");
    east_to_west.set(Mode::Pass);
    drained(&east, WEST, Duration::from_secs(60)).await;
    let got = west.get("/docs/fresh").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("x-tessera-read-from"), None);
    assert_eq!(got.header("x-amz-replication-status"), Some("REPLICA"));
}

#[tokio::test(flavor = "multi_thread")]
async fn of_two_gateways_one_drains_and_the_other_takes_over_when_it_dies() {
    let mut cluster = TestCluster::start_regions(2);
    let (east, west) = (cluster.client_in(EAST), cluster.client_in(WEST));
    bucket_everywhere(&[&east, &west], "photos", false).await;
    draining(&east, Duration::from_secs(20)).await;
    let second = cluster.second_gateway();
    let second = S3Client::in_region(&second, common::ACCESS_KEY, common::SECRET_KEY, EAST);

    // The first keeps the lease; the second only counts the backlog. Each change is sent once.
    for i in 0..20 {
        let via = if i % 2 == 0 { &east } else { &second };
        assert_eq!(via.put(&format!("/photos/p{i:02}"), "x").await.status, 200);
    }
    drained(&second, WEST, Duration::from_secs(30)).await;
    drained(&east, WEST, Duration::from_secs(30)).await;
    let (first_link, second_link) = (link(&east, WEST).await, link(&second, WEST).await);
    assert_eq!(first_link["draining"], true, "{first_link}");
    assert_eq!(second_link["draining"], false, "{second_link}");
    assert_eq!(first_link["delivered_entries"], 20, "{first_link}");
    assert_eq!(second_link["delivered_entries"], 0, "{second_link}");

    // Buckets made through the second gateway and written at once: the drainer's cached
    // bucket table predates them, and their objects must still be sent, not taken for the
    // objects of a deleted bucket.
    for b in 0..3 {
        assert_eq!(
            second.put(&format!("/new{b}"), Bytes::new()).await.status,
            200
        );
        assert_eq!(second.put(&format!("/new{b}/o"), "y").await.status, 200);
    }
    drained(&east, WEST, Duration::from_secs(30)).await;
    for b in 0..3 {
        let got = west.get(&format!("/new{b}/o")).await;
        assert_eq!(got.status, 200, "new{b}/o: {}", got.text());
    }

    // The drainer dies: the other takes the lease over once it lapses, and drains.
    cluster.kill("gateway");
    for i in 20..30 {
        assert_eq!(
            second.put(&format!("/photos/p{i:02}"), "x").await.status,
            200
        );
    }
    drained(&second, WEST, Duration::from_secs(40)).await;
    let taken_over = link(&second, WEST).await;
    assert_eq!(taken_over["draining"], true, "{taken_over}");
    assert_eq!(taken_over["delivered_entries"], 10, "{taken_over}");
    for i in 0..30 {
        let got = west.get(&format!("/photos/p{i:02}")).await;
        assert_eq!(got.status, 200, "p{i:02}");
    }
}

/// A new access key through `admin`'s admin API, with read on `bucket`: its id and secret.
async fn reader_key(admin: &S3Client, bucket: &str) -> (String, String) {
    let made = admin
        .send(
            "POST",
            "/_tessera/keys",
            &[],
            Bytes::from(r#"{"name": "geo", "create_bucket": false}"#),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.text());
    let key: serde_json::Value = serde_json::from_slice(&made.body).unwrap();
    let (id, secret) = (key["id"].as_str().unwrap(), key["secret"].as_str().unwrap());
    let grant = format!(r#"{{"bucket": "{bucket}", "read": true}}"#);
    let path = format!("/_tessera/keys/{id}/allow");
    let allowed = admin.send("POST", &path, &[], Bytes::from(grant)).await;
    assert_eq!(allowed.status, 200, "{}", allowed.text());
    (id.to_string(), secret.to_string())
}

/// Polls a GET of `path` by `s3` until it answers `want` (status and code; 200 for a success).
async fn answers_with(s3: &S3Client, path: &str, want: (u16, String), limit: Duration) -> Duration {
    let start = Instant::now();
    eventually(limit, path, || async {
        let reply = s3.get(path).await;
        let got = match reply.status {
            200 => (200, String::new()),
            _ => code(&reply),
        };
        (got == want).then_some(()).ok_or(format!("{got:?}"))
    })
    .await;
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread")]
async fn access_keys_and_locked_versions_reach_the_other_region() {
    let cluster = TestCluster::start_regions(2);
    let (east, west) = (cluster.client_in(EAST), cluster.client_in(WEST));
    assert_eq!(east.put("/shared", Bytes::new()).await.status, 200);
    assert_eq!(east.put("/shared/doc", "hello").await.status, 200);
    let ok = (200, String::new());

    // A key made in one region signs requests in the other, with the grants it has.
    for (home, away) in [(EAST, WEST), (WEST, EAST)] {
        let (id, secret) = reader_key(&cluster.client_in(home), "shared").await;
        let there = cluster.client_in_as(away, &id, &secret);
        let took = answers_with(&there, "/shared/doc", ok.clone(), Duration::from_secs(20)).await;
        println!("a key made in {home} worked in {away} after {took:?}");
        let put = there.put("/shared/other", "x").await;
        assert_eq!(code(&put), err(403, "AccessDenied"), "a reader's PUT");

        let path = format!("/_tessera/keys/{id}");
        let client = cluster.client_in(home);
        let deleted = client.send("DELETE", &path, &[], Bytes::new()).await;
        assert_eq!(deleted.status, 200, "{}", deleted.text());
        let refused = err(403, "InvalidAccessKeyId");
        let took = answers_with(&there, "/shared/doc", refused, Duration::from_secs(20)).await;
        println!("deleted in {home}, refused in {away} after {took:?}");
    }

    // A locked version is locked in the other region too: its DELETE is refused there.
    common::create_lock_bucket(&east, "/vault").await;
    let until = (chrono::Utc::now() + chrono::Duration::hours(1))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let put = east
        .send(
            "PUT",
            "/vault/kept",
            &[
                ("x-amz-object-lock-mode", "COMPLIANCE"),
                ("x-amz-object-lock-retain-until-date", &until),
                ("content-md5", &content_md5(b"kept")),
            ],
            Bytes::from_static(b"kept"),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text());
    let path = format!(
        "/vault/kept?versionId={}",
        put.header("x-amz-version-id").unwrap()
    );
    answers_with(&west, &path, ok, Duration::from_secs(20)).await;
    let head = west.send("HEAD", &path, &[], Bytes::new()).await;
    assert_eq!(head.header("x-amz-object-lock-mode"), Some("COMPLIANCE"));
    assert_eq!(head.header("x-amz-replication-status"), Some("REPLICA"));
    let deleted = west.delete(&path).await;
    assert_eq!(
        code(&deleted),
        err(403, "AccessDenied"),
        "deleting a locked replica"
    );
    assert_eq!(west.get(&path).await.text(), "kept");
}

#[tokio::test(flavor = "multi_thread")]
async fn buckets_and_their_settings_reach_the_other_region() {
    let cluster = TestCluster::start_regions(2);
    let (east, west) = (cluster.client_in(EAST), cluster.client_in(WEST));
    assert_eq!(east.put("/made-east", Bytes::new()).await.status, 200);
    let versioning = "<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>";
    assert_eq!(
        common::put_xml(&east, "/made-east?versioning", versioning)
            .await
            .status,
        200
    );
    let tagging =
        "<Tagging><TagSet><Tag><Key>team</Key><Value>geo</Value></Tag></TagSet></Tagging>";
    assert_eq!(
        common::put_xml(&east, "/made-east?tagging", tagging)
            .await
            .status,
        204
    );
    eventually(
        Duration::from_secs(20),
        "the bucket's settings in eu-west-1",
        || async {
            let status = west.get("/made-east?versioning").await.text();
            let tags = west.get("/made-east?tagging").await.text();
            match status.contains("<Status>Enabled</Status>") && tags.contains("<Value>geo</Value>")
            {
                true => Ok(()),
                false => Err(format!("{status} {tags}")),
            }
        },
    )
    .await;
    // Objects follow into it, with their version ids.
    let put = east.put("/made-east/k", "hello").await;
    let id = put.header("x-amz-version-id").unwrap().to_string();
    let path = format!("/made-east/k?versionId={id}");
    answers(&west, "HEAD", &path, 200).await;

    // A bucket deleted in one region is deleted in the other, once it is empty there too.
    assert_eq!(west.put("/short-lived", Bytes::new()).await.status, 200);
    answers(&east, "HEAD", "/short-lived", 200).await;
    assert_eq!(east.put("/short-lived/left", "x").await.status, 200);
    answers(&west, "HEAD", "/short-lived/left", 200).await;
    assert_eq!(west.delete("/short-lived").await.status, 409, "not empty");
    assert_eq!(east.delete("/short-lived/left").await.status, 204);
    answers(&west, "DELETE", "/short-lived", 204).await;
    answers(&east, "HEAD", "/short-lived", 404).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn resync_rebuilds_a_bucket_in_a_region_whose_nodes_were_wiped() {
    let mut cluster = TestCluster::start_regions(2);
    let (east, west) = (cluster.client_in(EAST), cluster.client_in(WEST));
    bucket_everywhere(&[&east, &west], "photos", false).await;
    let objects: Vec<(String, Vec<u8>)> = (0..12u64)
        .map(|i| {
            (
                format!("/photos/p{i}"),
                common::random_bytes(1 << (6 + i), i),
            )
        })
        .collect();
    for (key, data) in &objects {
        assert_eq!(east.put(key, data.clone()).await.status, 200);
    }
    drained(&east, WEST, Duration::from_secs(30)).await;

    // Every node of eu-west-1 loses its disk: the bucket and its objects are gone there.
    cluster.select(WEST);
    for node in common::NODES {
        cluster.wipe(node);
    }
    answers(&west, "HEAD", "/photos", 404).await;
    assert_eq!(west.put("/photos", Bytes::new()).await.status, 200);
    let path = format!("/_tessera/replication/resync?bucket=photos&target={WEST}");
    let started = east.send("POST", &path, &[], Bytes::new()).await;
    assert_eq!(started.status, 202, "{}", started.text());
    eventually(Duration::from_secs(60), "the resync", || async {
        let progress: serde_json::Value =
            serde_json::from_slice(&east.get("/_tessera/replication/resync").await.body).unwrap();
        match progress["running"] == false {
            true if progress["versions_sent"] == 12 && progress["errors"] == 0 => Ok(()),
            true => panic!("{progress}"),
            false => Err(progress.to_string()),
        }
    })
    .await;
    for (key, data) in &objects {
        let got = west.get(key).await;
        assert_eq!(got.status, 200, "{key}");
        assert!(got.body[..] == data[..], "{key}: the bytes differ");
    }
}

/// Waits until `method path` answers `status` (within 20 s).
async fn answers(s3: &S3Client, method: &str, path: &str, status: u16) {
    let what = format!("{method} {path} answering {status}");
    eventually(Duration::from_secs(20), &what, || async {
        let reply = s3.send(method, path, &[], Bytes::new()).await;
        match reply.status == status {
            true => Ok(()),
            false => Err(format!("{} {}", reply.status, reply.text())),
        }
    })
    .await;
}

/// The metrics of one region's gateway (on its console port, the S3 port plus one).
async fn cluster_metrics(cluster: &TestCluster, region: &str) -> String {
    let s3 = cluster.client_in(region);
    let token: serde_json::Value =
        serde_json::from_slice(&s3.get("/_tessera/metrics-token").await.body).unwrap();
    let endpoint = &cluster
        .endpoints
        .iter()
        .find(|(n, _)| n == region)
        .unwrap()
        .1;
    let port: u16 = endpoint.rsplit(':').next().unwrap().parse().unwrap();
    let console = format!("127.0.0.1:{}", port + 1);
    common::scrape(&console, token["token"].as_str().unwrap()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_drain_killed_in_the_middle_of_a_large_transfer_delivers_it_once_after_restart() {
    let mut cluster = TestCluster::start_regions(2);
    let (east, west) = (cluster.client_in(EAST), cluster.client_in(WEST));
    bucket_everywhere(&[&east, &west], "big", true).await;
    // A slow link, so that the transfer is still going when the drain is killed.
    let slow = cluster.proxy_peer(WEST).await;
    slow.set(Mode::Delay(Duration::from_millis(2)));
    let data = common::random_bytes(64 << 20, 7);
    let put = east.put("/big/archive.tar", data.clone()).await;
    assert_eq!(put.status, 200, "{}", put.text());
    let version = put.header("x-amz-version-id").unwrap().to_string();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        west.head("/big/archive.tar").await.status,
        404,
        "the transfer should still be going"
    );
    // The drain runs in the gateway: kill -9 it mid-transfer, and a holder of the entry too.
    cluster.kill("gateway");
    cluster.kill("z1-n1");
    slow.set(Mode::Pass);
    cluster.restart("gateway");
    // Restarted in the same place, it renews the lease its first run held rather than wait
    // for it to lapse (10 s).
    let restarted = Instant::now();
    draining(&east, Duration::from_secs(30)).await;
    assert!(
        restarted.elapsed() < Duration::from_secs(6),
        "{:?}",
        restarted.elapsed()
    );
    drained(&east, WEST, Duration::from_secs(60)).await;
    let got = west.get("/big/archive.tar").await;
    assert_eq!(got.status, 200);
    assert!(got.body[..] == data[..], "the bytes differ");
    assert_eq!(got.header("x-amz-version-id"), Some(version.as_str()));
    let there = versions(&west, "big").await;
    assert_eq!(there.len(), 1, "one version, not two: {there:?}");
    cluster.restart("z1-n1");
    // The restarted holder still had the entry: it is sent again (a no-op) and removed.
    drained(&east, WEST, Duration::from_secs(30)).await;
    assert_eq!(versions(&west, "big").await, there);
}

/// Replication throughput on this machine: objects written in us-east-1 while the link is cut,
/// then the time from its return to an empty backlog, for 4 KiB and 64 MiB objects; and the
/// catch-up after a 60 s partition under a steady load of 4 KiB PUTs.
/// `cargo test --release --test replication -- --ignored --nocapture` (figures in
/// docs/performance.md).
#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn replication_throughput() {
    use futures::StreamExt;
    let mut cluster = TestCluster::start_regions(2);
    let (east, west) = (cluster.client_in(EAST), cluster.client_in(WEST));
    let cut = cluster.proxy_peer(WEST).await;
    for (bucket, count, size) in [("small", 10_000u64, 4_096usize), ("large", 16, 64 << 20)] {
        bucket_everywhere(&[&east, &west], bucket, false).await;
        cut.set(Mode::Refuse);
        let data = Bytes::from(common::random_bytes(size, count));
        let puts = futures::stream::iter(0..count).map(|i| {
            let (s3, data) = (&east, data.clone());
            async move { s3.put(&format!("/{bucket}/o{i:05}"), data).await.status }
        });
        let statuses: Vec<u16> = puts.buffer_unordered(16).collect().await;
        assert!(statuses.iter().all(|&s| s == 200));
        let before = link(&east, WEST).await["delivered_entries"]
            .as_u64()
            .unwrap();
        let started = Instant::now();
        cut.set(Mode::Pass);
        eventually(Duration::from_secs(60), "a first delivery", || async {
            match link(&east, WEST).await["delivered_entries"].as_u64() > Some(before) {
                true => Ok(()),
                false => Err("not yet".into()),
            }
        })
        .await;
        let first = started.elapsed().as_secs_f64();
        drained(&east, WEST, Duration::from_secs(600)).await;
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "REPLICATION {count} objects of {size} B: {secs:.1} s, {:.0} objects/s, {:.0} MiB/s \
             (the first delivered after {first:.1} s)",
            count as f64 / secs,
            (count * size as u64) as f64 / secs / 1_048_576.0
        );
    }

    // A steady load of 4 KiB PUTs, `width` at a time: first 32 (as many as this machine takes
    // with both regions on it), then 8, under which the link is cut for 60 s.
    bucket_everywhere(&[&east, &west], "steady", false).await;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
    let writing = std::sync::Arc::new(AtomicBool::new(true));
    let written = std::sync::Arc::new(AtomicU64::new(0));
    let width = std::sync::Arc::new(AtomicU64::new(32));
    let load = {
        let (east, writing, written) = (east.clone(), writing.clone(), written.clone());
        let width = width.clone();
        tokio::spawn(async move {
            let data = Bytes::from(common::random_bytes(4096, 3));
            while writing.load(Relaxed) {
                let (first, n) = (written.load(Relaxed), width.load(Relaxed));
                let keys: Vec<String> = (0..n).map(|i| format!("/steady/k{}", first + i)).collect();
                let puts = keys.iter().map(|key| east.put(key, data.clone()));
                for reply in futures::future::join_all(puts).await {
                    assert_eq!(reply.status, 200);
                }
                written.fetch_add(n, Relaxed);
            }
        })
    };
    // Before the partition, the lag under each load: the oldest entry's age, sampled.
    for n in [32, 8] {
        width.store(n, Relaxed);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let before = written.load(Relaxed);
        let mut lag: f64 = 0.0;
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let seen = link(&east, WEST).await["oldest_pending_secs"].as_f64();
            lag = lag.max(seen.unwrap_or(0.0));
        }
        let rate = (written.load(Relaxed) - before) as f64 / 10.0;
        eprintln!(
            "STEADY {n} in flight, about {rate:.0} PUTs/s of 4 KiB: oldest pending entry at most {lag:.1} s"
        );
    }
    cut.set(Mode::Refuse);
    tokio::time::sleep(Duration::from_secs(60)).await;
    let backlog = link_backlog(&east).await;
    let delivered = || async {
        link(&east, WEST).await["delivered_entries"]
            .as_u64()
            .unwrap()
    };
    let delivered_before = delivered().await;
    cut.set(Mode::Pass);
    let healed = Instant::now();
    // The load goes on: the backlog is drained when its oldest entry is younger than a second.
    eventually(Duration::from_secs(600), "catching up", || async {
        let link = link(&east, WEST).await;
        match link["oldest_pending_secs"]
            .as_f64()
            .is_none_or(|age| age < 1.0)
        {
            true => Ok(()),
            false => Err(link.to_string()),
        }
    })
    .await;
    let caught_up = healed.elapsed().as_secs_f64();
    let drained_rate = (delivered().await - delivered_before) as f64 / caught_up;
    writing.store(false, Relaxed);
    load.await.unwrap();
    let written = written.load(Relaxed);
    eprintln!(
        "PARTITION 60 s under load ({written} PUTs in all, backlog {backlog} at the end of it): \
         caught up {caught_up:.1} s after the link returned, delivering {drained_rate:.0} \
         entries/s meanwhile"
    );
}

async fn link_backlog(s3: &S3Client) -> u64 {
    link(s3, WEST).await["backlog_entries"]
        .as_u64()
        .unwrap_or(0)
}
