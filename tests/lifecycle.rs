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
