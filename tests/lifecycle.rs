//! Bucket lifecycle: the configuration's round trip and error paths, and the background task
//! applying Expiration, AbortIncompleteMultipartUpload and the gateway's abandoned-upload rule, on
//! a cluster whose lifecycle "day" lasts two seconds.

mod common;

use base64::{engine::general_purpose::STANDARD, Engine};
use bytes::Bytes;
use common::{code, err, start_upload, Reply, S3Client, TestCluster};
use md5::Digest;
use std::time::{Duration, Instant};

/// Seconds in a lifecycle day on the test cluster.
const DAY: u64 = 2;

async fn put_lifecycle(s3: &S3Client, bucket: &str, rules: &str) -> Reply {
    let body = format!("<LifecycleConfiguration>{rules}</LifecycleConfiguration>");
    let md5 = STANDARD.encode(md5::Md5::digest(body.as_bytes()));
    s3.send(
        "PUT",
        &format!("/{bucket}?lifecycle"),
        &[("content-md5", &md5)],
        Bytes::from(body),
    )
    .await
}

/// Polls until `done` holds, for at most `limit`.
async fn eventually<F, Fut>(limit: Duration, mut done: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if done().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn lifecycle_rules_expire_keys_and_abort_uploads() {
    let cluster = TestCluster::start_with(&["--lifecycle-day-secs", &DAY.to_string()]);
    let s3 = cluster.client();
    assert_eq!(s3.put("/life", Bytes::new()).await.status, 200);

    // Configuration round trip and error paths.
    assert_eq!(
        code(&s3.get("/life?lifecycle").await),
        err(404, "NoSuchLifecycleConfiguration")
    );
    let rules = "<Rule><ID>tmp</ID><Filter><Prefix>tmp/</Prefix></Filter><Status>Enabled</Status>\
        <Expiration><Days>1</Days></Expiration></Rule>\
        <Rule><ID>uploads</ID><Filter><Prefix>up/</Prefix></Filter><Status>Enabled</Status>\
        <AbortIncompleteMultipartUpload><DaysAfterInitiation>1</DaysAfterInitiation></AbortIncompleteMultipartUpload></Rule>\
        <Rule><ID>off</ID><Prefix>keep/</Prefix><Status>Disabled</Status>\
        <Expiration><Date>2020-01-01T00:00:00Z</Date></Expiration></Rule>";
    let put = put_lifecycle(&s3, "life", rules).await;
    assert_eq!(put.status, 200, "{}", put.text());
    let got = s3.get("/life?lifecycle").await.text();
    for part in [
        "<ID>tmp</ID><Filter><Prefix>tmp/</Prefix></Filter><Status>Enabled</Status><Expiration><Days>1</Days></Expiration>",
        "<AbortIncompleteMultipartUpload><DaysAfterInitiation>1</DaysAfterInitiation></AbortIncompleteMultipartUpload>",
        "<Prefix>keep/</Prefix><Status>Disabled</Status><Expiration><Date>2020-01-01T00:00:00.000Z</Date></Expiration>",
    ] {
        assert!(got.contains(part), "{part} missing from {got}");
    }
    let no_md5 = s3
        .send(
            "PUT",
            "/life?lifecycle",
            &[],
            Bytes::from("<LifecycleConfiguration/>"),
        )
        .await;
    assert_eq!(code(&no_md5), err(400, "InvalidRequest"));
    assert_eq!(
        code(&put_lifecycle(&s3, "life", "").await),
        err(400, "MalformedXML")
    );
    assert_eq!(
        code(
            &put_lifecycle(
                &s3,
                "life",
                "<Rule><Status>Enabled</Status><Expiration><Days>-1</Days></Expiration></Rule>"
            )
            .await
        ),
        err(400, "InvalidArgument")
    );
    assert_eq!(
        code(&put_lifecycle(&s3, "life", "<Rule><Status>Enabled</Status><Transition><Days>1</Days><StorageClass>GLACIER</StorageClass></Transition></Rule>").await),
        err(501, "NotImplemented")
    );
    assert_eq!(
        code(&put_lifecycle(&s3, "no-such-life", rules).await),
        err(404, "NoSuchBucket")
    );
    assert_eq!(
        s3.get("/life?lifecycle").await.text(),
        got,
        "a refused configuration changes nothing"
    );

    // Expiration after one (two-second) day, only under the rule's prefix; uploads under up/
    // aborted after one day; other uploads only by the gateway's 7-day abandoned-upload rule.
    s3.put("/life/tmp/a", "a").await;
    s3.put("/life/keep/b", "b").await;
    let short = start_upload(&s3, "/life/up/x", &[]).await;
    let long = start_upload(&s3, "/life/other/y", &[]).await;
    let expired = eventually(Duration::from_secs(8 * DAY), || async {
        s3.get("/life/tmp/a").await.status == 404
    })
    .await;
    assert!(expired, "tmp/a expired");
    assert_eq!(s3.get("/life/keep/b").await.text(), "b");
    let aborted = eventually(Duration::from_secs(8 * DAY), || async {
        !s3.get("/life?uploads").await.text().contains(&short)
    })
    .await;
    assert!(aborted, "the upload under up/ was aborted");
    assert!(s3.get("/life?uploads").await.text().contains(&long));
    let abandoned = eventually(Duration::from_secs(12 * DAY), || async {
        !s3.get("/life?uploads").await.text().contains(&long)
    })
    .await;
    assert!(abandoned, "the abandoned upload was aborted after 7 days");
    assert_eq!(s3.get("/life/keep/b").await.text(), "b");

    // Deleting the configuration.
    let deleted = s3.delete("/life?lifecycle").await;
    assert_eq!(deleted.status, 204);
    assert_eq!(
        code(&s3.get("/life?lifecycle").await),
        err(404, "NoSuchLifecycleConfiguration")
    );
}

/// The object versions a `?versions` listing of `prefix` shows: version ids and delete markers.
async fn versions(s3: &S3Client, bucket: &str, prefix: &str) -> (Vec<String>, usize) {
    let listing = s3
        .get(&format!(
            "/{bucket}?versions&prefix={}",
            prefix.replace('/', "%2F")
        ))
        .await
        .text();
    let markers = listing.matches("<DeleteMarker>").count();
    (common::xml_values(&listing, "VersionId"), markers)
}

/// A versioned bucket (with Object Lock) under rules with generated IDs, an `And` filter of
/// prefix, tag and size, NoncurrentVersionExpiration keeping the newest noncurrent version, and
/// ExpiredObjectDeleteMarker: the worker purges what the rules say, and a noncurrent version
/// under a legal hold survives.
#[tokio::test(flavor = "multi_thread")]
async fn lifecycle_rules_expire_noncurrent_versions_markers_and_filtered_keys() {
    let cluster = TestCluster::start_with(&["--lifecycle-day-secs", &DAY.to_string()]);
    let s3 = cluster.client();
    common::create_lock_bucket(&s3, "/vers").await;
    let held = Bytes::from("held");
    let md5 = STANDARD.encode(md5::Md5::digest(&held));
    let first = s3
        .send(
            "PUT",
            "/vers/nc/held",
            &[
                ("content-md5", &md5),
                ("x-amz-object-lock-legal-hold", "ON"),
            ],
            held,
        )
        .await;
    assert_eq!(first.status, 200, "{}", first.text());
    for n in 1..=2 {
        s3.put("/vers/nc/held", format!("held {n}")).await;
    }
    for n in 1..=3 {
        s3.put("/vers/nc/free", format!("free {n}")).await;
    }
    s3.put("/vers/dm/gone", "gone").await;
    s3.delete("/vers/dm/gone").await;
    let big = "b".repeat(200);
    for (key, tagging, body) in [
        ("t/tagged", "expire=yes", "large enough"),
        ("t/small", "expire=yes", "s"),
        ("t/big", "expire=yes", big.as_str()),
        ("t/untagged", "other=1", "large enough"),
    ] {
        let put = s3
            .send(
                "PUT",
                &format!("/vers/{key}"),
                &[("x-amz-tagging", tagging)],
                Bytes::from(body.to_string()),
            )
            .await;
        assert_eq!(put.status, 200, "{}", put.text());
    }

    let rules = "<Rule><Filter><Prefix>nc/</Prefix></Filter><Status>Enabled</Status>\
        <NoncurrentVersionExpiration><NoncurrentDays>1</NoncurrentDays>\
        <NewerNoncurrentVersions>1</NewerNoncurrentVersions></NoncurrentVersionExpiration></Rule>\
        <Rule><Filter><Prefix>dm/</Prefix></Filter><Status>Enabled</Status>\
        <Expiration><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker></Expiration>\
        <NoncurrentVersionExpiration><NoncurrentDays>1</NoncurrentDays></NoncurrentVersionExpiration></Rule>\
        <Rule><ID>tagged</ID><Filter><And><Prefix>t/</Prefix><Tag><Key>expire</Key><Value>yes</Value></Tag>\
        <ObjectSizeGreaterThan>3</ObjectSizeGreaterThan><ObjectSizeLessThan>100</ObjectSizeLessThan>\
        </And></Filter><Status>Enabled</Status><Expiration><Days>1</Days></Expiration></Rule>";
    let put = put_lifecycle(&s3, "vers", rules).await;
    assert_eq!(put.status, 200, "{}", put.text());
    let got = s3.get("/vers?lifecycle").await.text();
    let ids = common::xml_values(&got, "ID");
    assert_eq!(ids.len(), 3, "every rule has an ID: {got}");
    assert!(ids.contains(&"tagged".to_string()));
    assert!(
        got.contains("<NewerNoncurrentVersions>1</NewerNoncurrentVersions>")
            && got.contains("<ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker>")
            && got.contains("<ObjectSizeGreaterThan>3</ObjectSizeGreaterThan>")
            && got.contains("<ObjectSizeLessThan>100</ObjectSizeLessThan>"),
        "{got}"
    );

    let limit = Duration::from_secs(10 * DAY);
    let free_pruned = eventually(limit, || async {
        versions(&s3, "vers", "nc/free").await.0.len() == 2
    })
    .await;
    assert!(
        free_pruned,
        "the oldest noncurrent version of nc/free was purged"
    );
    let markers_gone = eventually(limit, || async {
        versions(&s3, "vers", "dm/").await == (Vec::new(), 0)
    })
    .await;
    assert!(
        markers_gone,
        "dm/gone's version, then its lone marker, were purged"
    );
    let tagged_expired = eventually(limit, || async {
        s3.head("/vers/t/tagged").await.status == 404
    })
    .await;
    assert!(tagged_expired, "t/tagged expired");
    assert_eq!(s3.get("/vers/t/small").await.text(), "s");
    assert_eq!(
        s3.get("/vers/t/big").await.text(),
        big,
        "over ObjectSizeLessThan"
    );
    assert_eq!(s3.get("/vers/t/untagged").await.text(), "large enough");
    // The version under a legal hold is past both limits but stays; the newest noncurrent one
    // is kept by NewerNoncurrentVersions.
    let (held_versions, _) = versions(&s3, "vers", "nc/held").await;
    assert_eq!(held_versions.len(), 3, "{held_versions:?}");
    let oldest = held_versions.last().unwrap();
    let kept = s3.get(&format!("/vers/nc/held?versionId={oldest}")).await;
    assert_eq!(kept.text(), "held");
}
