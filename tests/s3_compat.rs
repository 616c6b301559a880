//! S3 operations beyond the basics, with AWS's error codes: CopyObject and UploadPartCopy,
//! DeleteObjects, conditional writes, object and bucket tagging, bucket CORS and preflight, and
//! virtual-hosted-style addressing.

mod common;

use base64::{engine::general_purpose::STANDARD, Engine};
use bytes::Bytes;
use common::{
    code, content_md5, err, md5_hex, random_bytes, start_upload, xml_value, Reply, S3Client,
    TestCluster,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn copy(s3: &S3Client, to: &str, headers: &[(&str, &str)]) -> Reply {
    s3.send("PUT", to, headers, Bytes::new()).await
}

fn complete_body(etags: &[String]) -> String {
    let parts: String = etags
        .iter()
        .enumerate()
        .map(|(i, e)| {
            format!(
                "<Part><PartNumber>{}</PartNumber><ETag>{e}</ETag></Part>",
                i + 1
            )
        })
        .collect();
    format!("<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>")
}

#[tokio::test(flavor = "multi_thread")]
async fn copy_object_and_upload_part_copy() {
    let cluster = TestCluster::start();
    let s3 = cluster.client();
    for bucket in ["/cp-src", "/cp-dst"] {
        assert_eq!(s3.put(bucket, Bytes::new()).await.status, 200);
    }
    let data = random_bytes((1 << 20) + 4321, 1);
    let put = s3
        .send(
            "PUT",
            "/cp-src/a",
            &[("content-type", "text/plain"), ("x-amz-meta-colour", "red")],
            Bytes::from(data.clone()),
        )
        .await;
    assert_eq!(put.status, 200);
    let etag = format!("\"{}\"", md5_hex(&data));

    // Same bucket, metadata copied; the key with a space is URL-encoded in the header.
    let same = copy(
        &s3,
        "/cp-src/with%20space",
        &[("x-amz-copy-source", "/cp-src/a")],
    )
    .await;
    assert_eq!(same.status, 200, "{}", same.text());
    assert!(same.text().contains("<CopyObjectResult"));
    assert_eq!(
        xml_value(&same, "ETag").unwrap().replace("&quot;", "\""),
        etag
    );
    assert!(xml_value(&same, "LastModified").unwrap().ends_with('Z'));
    let got = s3.get("/cp-src/with%20space").await;
    assert!(got.body == data);
    assert_eq!(got.header("x-amz-meta-colour"), Some("red"));
    assert_eq!(got.header("content-type"), Some("text/plain"));

    // Across buckets, metadata replaced.
    let other = copy(
        &s3,
        "/cp-dst/b",
        &[
            ("x-amz-copy-source", "cp-src/with%20space"),
            ("x-amz-metadata-directive", "REPLACE"),
            ("content-type", "application/x-new"),
        ],
    )
    .await;
    assert_eq!(other.status, 200, "{}", other.text());
    let got = s3.get("/cp-dst/b").await;
    assert!(got.body == data);
    assert_eq!(got.header("x-amz-meta-colour"), None);
    assert_eq!(got.header("content-type"), Some("application/x-new"));
    assert_eq!(got.header("etag"), Some(etag.as_str()));

    // Onto itself: only when something changes.
    let itself = copy(&s3, "/cp-src/a", &[("x-amz-copy-source", "/cp-src/a")]).await;
    assert_eq!(code(&itself), err(400, "InvalidRequest"));
    let replaced = copy(
        &s3,
        "/cp-src/a",
        &[
            ("x-amz-copy-source", "/cp-src/a"),
            ("x-amz-metadata-directive", "REPLACE"),
            ("x-amz-meta-colour", "blue"),
        ],
    )
    .await;
    assert_eq!(replaced.status, 200, "{}", replaced.text());
    let head = s3.head("/cp-src/a").await;
    assert_eq!(head.header("x-amz-meta-colour"), Some("blue"));
    assert_eq!(head.header("content-type"), Some("binary/octet-stream"));

    // Error paths.
    let source = |s: &'static str| [("x-amz-copy-source", s)];
    assert_eq!(
        code(&copy(&s3, "/cp-dst/x", &source("/cp-src/nope")).await),
        err(404, "NoSuchKey")
    );
    assert_eq!(
        code(&copy(&s3, "/cp-dst/x", &source("/no-such-bkt/a")).await),
        err(404, "NoSuchBucket")
    );
    assert_eq!(
        code(&copy(&s3, "/cp-dst/x", &source("cp-src")).await),
        err(400, "InvalidArgument")
    );
    assert_eq!(
        code(&copy(&s3, "/no-such-bkt/x", &source("/cp-src/a")).await),
        err(404, "NoSuchBucket")
    );
    let directive = copy(
        &s3,
        "/cp-dst/x",
        &[
            ("x-amz-copy-source", "/cp-src/a"),
            ("x-amz-metadata-directive", "MOVE"),
        ],
    )
    .await;
    assert_eq!(code(&directive), err(400, "InvalidArgument"));
    let versioned = copy(&s3, "/cp-dst/x", &source("/cp-src/a?versionId=abc")).await;
    assert_eq!(code(&versioned), err(400, "InvalidArgument"));

    // Source conditions: every failure is 412, never 304.
    let future = "Fri, 01 Jan 2100 00:00:00 GMT";
    let past = "Mon, 01 Jan 2001 00:00:00 GMT";
    let current = s3
        .head("/cp-src/a")
        .await
        .header("etag")
        .unwrap()
        .to_string();
    for (name, value, ok) in [
        ("x-amz-copy-source-if-match", "\"0000\"", false),
        ("x-amz-copy-source-if-match", current.as_str(), true),
        ("x-amz-copy-source-if-none-match", current.as_str(), false),
        ("x-amz-copy-source-if-none-match", "\"0000\"", true),
        ("x-amz-copy-source-if-modified-since", future, false),
        ("x-amz-copy-source-if-modified-since", past, true),
        ("x-amz-copy-source-if-unmodified-since", past, false),
        ("x-amz-copy-source-if-unmodified-since", future, true),
    ] {
        let reply = copy(
            &s3,
            "/cp-dst/cond",
            &[("x-amz-copy-source", "/cp-src/a"), (name, value)],
        )
        .await;
        if ok {
            assert_eq!(reply.status, 200, "{name}: {value}: {}", reply.text());
        } else {
            assert_eq!(
                code(&reply),
                err(412, "PreconditionFailed"),
                "{name}: {value}"
            );
        }
    }

    // UploadPartCopy: two ranges of a 6 MiB object make a two-part object.
    let big = random_bytes((6 << 20) + 99, 2);
    assert_eq!(s3.put("/cp-src/big", big.clone()).await.status, 200);
    let upload = start_upload(&s3, "/cp-dst/joined", &[]).await;
    let cut = 5 << 20;
    let mut etags = Vec::new();
    for (n, range) in [
        (1, format!("bytes=0-{}", cut - 1)),
        (2, format!("bytes={cut}-{}", big.len() - 1)),
    ] {
        let reply = s3
            .send(
                "PUT",
                &format!("/cp-dst/joined?partNumber={n}&uploadId={upload}"),
                &[
                    ("x-amz-copy-source", "/cp-src/big"),
                    ("x-amz-copy-source-range", &range),
                ],
                Bytes::new(),
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert!(reply.text().contains("<CopyPartResult"));
        etags.push(xml_value(&reply, "ETag").unwrap().replace("&quot;", "\""));
    }
    assert_eq!(etags[0], format!("\"{}\"", md5_hex(&big[..cut])));
    let part_copy = |range: &'static str, upload: String| {
        let s3 = &s3;
        async move {
            s3.send(
                "PUT",
                &format!("/cp-dst/joined?partNumber=3&uploadId={upload}"),
                &[
                    ("x-amz-copy-source", "/cp-src/big"),
                    ("x-amz-copy-source-range", range),
                ],
                Bytes::new(),
            )
            .await
        }
    };
    assert_eq!(
        code(&part_copy("bytes=0-99999999", upload.clone()).await),
        err(400, "InvalidRequest")
    );
    assert_eq!(
        code(&part_copy("bytes=5-", upload.clone()).await),
        err(400, "InvalidArgument")
    );
    assert_eq!(
        code(&part_copy("bytes=0-1", "0".repeat(32)).await),
        err(404, "NoSuchUpload")
    );
    let done = s3
        .send(
            "POST",
            &format!("/cp-dst/joined?uploadId={upload}"),
            &[],
            Bytes::from(complete_body(&etags)),
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.text());
    let joined = s3.get("/cp-dst/joined").await;
    assert!(joined.body == big);
    assert!(joined.header("etag").unwrap().ends_with("-2\""));

    // Empty and inline sources.
    assert_eq!(s3.put("/cp-src/empty", Bytes::new()).await.status, 200);
    let empty = copy(
        &s3,
        "/cp-dst/empty",
        &[("x-amz-copy-source", "/cp-src/empty")],
    )
    .await;
    assert_eq!(empty.status, 200, "{}", empty.text());
    let got = s3.get("/cp-dst/empty").await;
    assert_eq!((got.status, got.body.len()), (200, 0));
    assert_eq!(s3.put("/cp-src/small", "tiny").await.status, 200);
    let small = copy(
        &s3,
        "/cp-dst/small",
        &[("x-amz-copy-source", "/cp-src/small")],
    )
    .await;
    assert_eq!(small.status, 200);
    assert_eq!(s3.get("/cp-dst/small").await.text(), "tiny");

    // Copying a multipart object makes a single-part one whose ETag is the MD5 of its bytes.
    let flat = copy(
        &s3,
        "/cp-dst/flat",
        &[("x-amz-copy-source", "/cp-dst/joined")],
    )
    .await;
    assert_eq!(flat.status, 200);
    let flat = s3.head("/cp-dst/flat").await;
    assert_eq!(
        flat.header("etag"),
        Some(format!("\"{}\"", md5_hex(&big)).as_str())
    );
    assert_eq!(
        flat.header("content-length"),
        Some(big.len().to_string().as_str())
    );
}

fn delete_body(keys: &[&str], quiet: bool) -> String {
    let objects: String = keys
        .iter()
        .map(|k| format!("<Object><Key>{k}</Key></Object>"))
        .collect();
    format!("<Delete><Quiet>{quiet}</Quiet>{objects}</Delete>")
}

async fn delete_objects(s3: &S3Client, bucket: &str, body: String) -> Reply {
    let md5 = content_md5(body.as_bytes());
    s3.send(
        "POST",
        &format!("{bucket}?delete"),
        &[("content-md5", &md5)],
        Bytes::from(body),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_objects_and_conditional_writes() {
    let cluster = TestCluster::start();
    let s3 = cluster.client();
    s3.put("/del-bkt", Bytes::new()).await;
    for key in ["k1", "k2", "k3"] {
        s3.put(&format!("/del-bkt/{key}"), key).await;
    }
    let reply = delete_objects(
        &s3,
        "/del-bkt",
        delete_body(&["k1", "k2", "missing"], false),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text().matches("<Deleted>").count(), 3);
    assert!(!reply.text().contains("<Error>"));
    assert_eq!(s3.get("/del-bkt/k1").await.status, 404);
    assert_eq!(s3.get("/del-bkt/k3").await.status, 200);
    let quiet = delete_objects(&s3, "/del-bkt", delete_body(&["k3"], true)).await;
    assert_eq!(quiet.status, 200);
    assert!(!quiet.text().contains("<Deleted>"));
    assert_eq!(s3.get("/del-bkt/k3").await.status, 404);

    let keys: Vec<String> = (0..1001).map(|i| format!("k{i}")).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    assert_eq!(
        code(&delete_objects(&s3, "/del-bkt", delete_body(&keys, true)).await),
        err(400, "MalformedXML")
    );
    assert_eq!(
        code(&delete_objects(&s3, "/del-bkt", "<Delete>".into()).await),
        err(400, "MalformedXML")
    );
    assert_eq!(
        code(&delete_objects(&s3, "/del-bkt", "<Delete></Delete>".into()).await),
        err(400, "MalformedXML")
    );
    assert_eq!(
        code(&delete_objects(&s3, "/no-such-bkt", delete_body(&["a"], false)).await),
        err(404, "NoSuchBucket")
    );
    let body = delete_body(&["a"], false);
    let no_md5 = s3
        .send("POST", "/del-bkt?delete", &[], Bytes::from(body.clone()))
        .await;
    assert_eq!(code(&no_md5), err(400, "InvalidRequest"));
    let wrong_md5 = s3
        .send(
            "POST",
            "/del-bkt?delete",
            &[("content-md5", &content_md5(b"other"))],
            Bytes::from(body),
        )
        .await;
    assert_eq!(code(&wrong_md5), err(400, "BadDigest"));
    let version = delete_objects(
        &s3,
        "/del-bkt",
        "<Delete><Object><Key>a</Key><VersionId>v1</VersionId></Object></Delete>".into(),
    )
    .await;
    assert_eq!(version.status, 200);
    assert!(version
        .text()
        .contains("<Error><Key>a</Key><VersionId>v1</VersionId><Code>InvalidArgument</Code>"));

    // Conditional PutObject.
    let put = |headers: &'static [(&'static str, &'static str)], body: &'static str| {
        let s3 = &s3;
        async move {
            s3.send("PUT", "/del-bkt/cond", headers, Bytes::from(body))
                .await
        }
    };
    assert_eq!(
        code(&put(&[("if-match", "\"abc\"")], "x").await),
        err(404, "NoSuchKey")
    );
    assert_eq!(put(&[("if-none-match", "*")], "first").await.status, 200);
    assert_eq!(
        code(&put(&[("if-none-match", "*")], "second").await),
        err(412, "PreconditionFailed")
    );
    assert_eq!(s3.get("/del-bkt/cond").await.text(), "first");
    assert_eq!(
        code(&put(&[("if-match", "\"0123\"")], "third").await),
        err(412, "PreconditionFailed")
    );
    assert_eq!(
        code(&put(&[("if-none-match", "\"0123\"")], "x").await),
        err(501, "NotImplemented")
    );
    let etag = format!("\"{}\"", md5_hex(b"first"));
    let matched = s3
        .send(
            "PUT",
            "/del-bkt/cond",
            &[("if-match", &etag)],
            Bytes::from("fourth"),
        )
        .await;
    assert_eq!(matched.status, 200);
    assert_eq!(s3.get("/del-bkt/cond").await.text(), "fourth");

    // Conditional CompleteMultipartUpload.
    let upload = start_upload(&s3, "/del-bkt/cond", &[]).await;
    let part = s3
        .put(
            &format!("/del-bkt/cond?partNumber=1&uploadId={upload}"),
            "part",
        )
        .await;
    let etags = vec![part.header("etag").unwrap().to_string()];
    let complete = |headers: &'static [(&'static str, &'static str)]| {
        let (s3, upload, body) = (&s3, upload.clone(), complete_body(&etags));
        async move {
            s3.send(
                "POST",
                &format!("/del-bkt/cond?uploadId={upload}"),
                headers,
                Bytes::from(body),
            )
            .await
        }
    };
    assert_eq!(
        code(&complete(&[("if-none-match", "*")]).await),
        err(412, "PreconditionFailed")
    );
    assert_eq!(
        code(&complete(&[("if-match", "\"0123\"")]).await),
        err(412, "PreconditionFailed")
    );
    assert_eq!(complete(&[]).await.status, 200);
    assert_eq!(s3.get("/del-bkt/cond").await.text(), "part");
}

const CORS: &str = "<CORSConfiguration><CORSRule><AllowedOrigin>https://*.example.com</AllowedOrigin>\
    <AllowedMethod>GET</AllowedMethod><AllowedMethod>PUT</AllowedMethod><AllowedHeader>*</AllowedHeader>\
    <ExposeHeader>ETag</ExposeHeader><MaxAgeSeconds>600</MaxAgeSeconds></CORSRule></CORSConfiguration>";

#[tokio::test(flavor = "multi_thread")]
async fn tagging_cors_and_virtual_hosts() {
    let cluster = TestCluster::start();
    let s3 = cluster.client();
    s3.put("/tag-bkt", Bytes::new()).await;

    // Object tagging.
    let put = s3
        .send(
            "PUT",
            "/tag-bkt/obj",
            &[("x-amz-tagging", "a=1&b%20c=two")],
            Bytes::from("data"),
        )
        .await;
    assert_eq!(put.status, 200);
    assert_eq!(
        s3.get("/tag-bkt/obj").await.header("x-amz-tagging-count"),
        Some("2")
    );
    assert_eq!(
        s3.head("/tag-bkt/obj").await.header("x-amz-tagging-count"),
        Some("2")
    );
    let tags = s3.get("/tag-bkt/obj?tagging").await;
    assert!(
        tags.text()
            .contains("<Tag><Key>b c</Key><Value>two</Value></Tag>"),
        "{}",
        tags.text()
    );
    let before = s3.head("/tag-bkt/obj").await;
    let etag = before.header("etag").unwrap().to_string();
    let modified = before.header("last-modified").unwrap().to_string();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let body = "<Tagging><TagSet><Tag><Key>only</Key><Value>one</Value></Tag></TagSet></Tagging>";
    assert_eq!(s3.put("/tag-bkt/obj?tagging", body).await.status, 200);
    let after = s3.get("/tag-bkt/obj").await;
    assert_eq!(
        (after.text().as_str(), after.header("etag")),
        ("data", Some(etag.as_str()))
    );
    assert_eq!(after.header("x-amz-tagging-count"), Some("1"));
    assert_eq!(after.header("last-modified"), Some(modified.as_str()));
    assert_eq!(s3.delete("/tag-bkt/obj?tagging").await.status, 204);
    assert_eq!(
        s3.get("/tag-bkt/obj").await.header("x-amz-tagging-count"),
        None
    );
    assert!(s3
        .get("/tag-bkt/obj?tagging")
        .await
        .text()
        .contains("<TagSet></TagSet>"));
    assert_eq!(
        code(&s3.get("/tag-bkt/none?tagging").await),
        err(404, "NoSuchKey")
    );
    assert_eq!(
        code(&s3.put("/tag-bkt/none?tagging", body).await),
        err(404, "NoSuchKey")
    );
    let eleven: String = (0..11)
        .map(|i| format!("<Tag><Key>k{i}</Key><Value>v</Value></Tag>"))
        .collect();
    let too_many = format!("<Tagging><TagSet>{eleven}</TagSet></Tagging>");
    assert_eq!(
        code(&s3.put("/tag-bkt/obj?tagging", too_many).await),
        err(400, "InvalidTag")
    );
    assert_eq!(
        code(&s3.put("/tag-bkt/obj?tagging", "<Tagging>").await),
        err(400, "MalformedXML")
    );
    let dup = s3
        .send(
            "PUT",
            "/tag-bkt/dup",
            &[("x-amz-tagging", "a=1&a=2")],
            Bytes::from("x"),
        )
        .await;
    assert_eq!(code(&dup), err(400, "InvalidArgument"));
    // Tags travel with a copy unless replaced.
    s3.send(
        "PUT",
        "/tag-bkt/t",
        &[("x-amz-tagging", "x=y")],
        Bytes::from("v"),
    )
    .await;
    let copied = s3
        .send(
            "PUT",
            "/tag-bkt/t2",
            &[("x-amz-copy-source", "/tag-bkt/t")],
            Bytes::new(),
        )
        .await;
    assert_eq!(copied.status, 200);
    assert_eq!(
        s3.head("/tag-bkt/t2").await.header("x-amz-tagging-count"),
        Some("1")
    );

    // Bucket tagging.
    assert_eq!(
        code(&s3.get("/tag-bkt?tagging").await),
        err(404, "NoSuchTagSet")
    );
    let md5 = content_md5(body.as_bytes());
    let put_tags = s3
        .send(
            "PUT",
            "/tag-bkt?tagging",
            &[("content-md5", &md5)],
            Bytes::from(body),
        )
        .await;
    assert_eq!(put_tags.status, 204, "{}", put_tags.text());
    assert!(s3
        .get("/tag-bkt?tagging")
        .await
        .text()
        .contains("<Key>only</Key>"));
    assert_eq!(
        code(&s3.put("/tag-bkt?tagging", body).await),
        err(400, "InvalidRequest")
    );
    assert_eq!(s3.delete("/tag-bkt?tagging").await.status, 204);
    assert_eq!(
        code(&s3.get("/tag-bkt?tagging").await),
        err(404, "NoSuchTagSet")
    );
    assert_eq!(
        code(&s3.get("/no-such-bkt?tagging").await),
        err(404, "NoSuchBucket")
    );
    assert!(s3.get("/").await.text().contains("<Name>tag-bkt</Name>"));

    // CORS configuration.
    assert_eq!(
        code(&s3.get("/tag-bkt?cors").await),
        err(404, "NoSuchCORSConfiguration")
    );
    let put_cors = |body: String| {
        let s3 = &s3;
        async move {
            let md5 = content_md5(body.as_bytes());
            s3.send(
                "PUT",
                "/tag-bkt?cors",
                &[("content-md5", &md5)],
                Bytes::from(body),
            )
            .await
        }
    };
    assert_eq!(
        code(&put_cors(CORS.replace("PUT", "PATCH")).await),
        err(400, "InvalidRequest")
    );
    assert_eq!(
        code(&put_cors("<CORSConfiguration/>".into()).await),
        err(400, "MalformedXML")
    );
    assert_eq!(put_cors(CORS.into()).await.status, 200);
    assert!(s3
        .get("/tag-bkt?cors")
        .await
        .text()
        .contains("<AllowedOrigin>https://*.example.com</AllowedOrigin>"));

    // Preflight, unauthenticated, answered from the rules.
    let preflight = |origin: &'static str, method: &'static str| {
        let endpoint = cluster.endpoint.clone();
        async move { raw_options(&endpoint, None, origin, method).await }
    };
    let ok = preflight("https://app.example.com", "PUT").await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(
        ok.contains("access-control-allow-origin: https://app.example.com"),
        "{ok}"
    );
    assert!(ok.contains("access-control-max-age: 600"), "{ok}");
    let denied = preflight("https://evil.org", "PUT").await;
    assert!(
        denied.starts_with("HTTP/1.1 403") && denied.contains("<Code>AccessForbidden</Code>"),
        "{denied}"
    );
    let wrong_method = preflight("https://app.example.com", "DELETE").await;
    assert!(wrong_method.starts_with("HTTP/1.1 403"), "{wrong_method}");
    let no_origin = preflight("", "PUT").await;
    assert!(
        no_origin.starts_with("HTTP/1.1 400") && no_origin.contains("<Code>BadRequest</Code>"),
        "{no_origin}"
    );
    // A request with an allowed Origin gets the headers.
    let get = s3
        .send(
            "GET",
            "/tag-bkt/obj",
            &[("origin", "https://app.example.com")],
            Bytes::new(),
        )
        .await;
    assert_eq!(
        get.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(get.header("access-control-expose-headers"), Some("ETag"));
    let other = s3
        .send(
            "GET",
            "/tag-bkt/obj",
            &[("origin", "https://evil.org")],
            Bytes::new(),
        )
        .await;
    assert_eq!(other.header("access-control-allow-origin"), None);

    // Virtual-hosted style (dev's root domain is `localhost`): the Host names the bucket.
    let vhost = raw_options(
        &cluster.endpoint,
        Some("tag-bkt.localhost"),
        "https://app.example.com",
        "GET",
    )
    .await;
    assert!(vhost.starts_with("HTTP/1.1 200"), "{vhost}");
    let vhost_missing = raw_options(
        &cluster.endpoint,
        Some("no-such-bkt.localhost"),
        "https://a.example.com",
        "GET",
    )
    .await;
    assert!(
        vhost_missing.contains("<Code>NoSuchBucket</Code>"),
        "{vhost_missing}"
    );

    assert_eq!(s3.delete("/tag-bkt?cors").await.status, 204);
    assert_eq!(
        code(&s3.get("/tag-bkt?cors").await),
        err(404, "NoSuchCORSConfiguration")
    );
    let off = preflight("https://app.example.com", "PUT").await;
    assert!(off.starts_with("HTTP/1.1 403"), "{off}");
}

/// An unauthenticated `OPTIONS /tag-bkt/obj` (path style) or `OPTIONS /obj` with a virtual host,
/// over a plain socket; returns the response head and body as text.
async fn raw_options(endpoint: &str, vhost: Option<&str>, origin: &str, method: &str) -> String {
    let addr = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let port = addr.rsplit(':').next().unwrap();
    let (host, path) = match vhost {
        Some(h) => (format!("{h}:{port}"), "/obj"),
        None => (addr.to_string(), "/tag-bkt/obj"),
    };
    let origin = if origin.is_empty() {
        String::new()
    } else {
        format!("Origin: {origin}\r\n")
    };
    let request = format!(
        "OPTIONS {path} HTTP/1.1\r\nHost: {host}\r\n{origin}Access-Control-Request-Method: {method}\r\n\
         Access-Control-Request-Headers: Content-Type\r\nConnection: close\r\n\r\n"
    );
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn multipart_listings_page() {
    let cluster = TestCluster::start();
    let s3 = cluster.client();
    s3.put("/pages", Bytes::new()).await;
    let upload = start_upload(&s3, "/pages/obj", &[]).await;
    for n in 1..=5 {
        let reply = s3
            .put(
                &format!("/pages/obj?partNumber={n}&uploadId={upload}"),
                format!("part {n}"),
            )
            .await;
        assert_eq!(reply.status, 200);
    }
    let numbers = |reply: &Reply| -> Vec<String> {
        reply
            .text()
            .split("<PartNumber>")
            .skip(1)
            .map(|p| p[..p.find('<').unwrap()].to_string())
            .collect()
    };
    let first = s3
        .get(&format!("/pages/obj?uploadId={upload}&max-parts=2"))
        .await;
    assert_eq!(numbers(&first), ["1", "2"]);
    assert_eq!(xml_value(&first, "IsTruncated").as_deref(), Some("true"));
    assert_eq!(
        xml_value(&first, "NextPartNumberMarker").as_deref(),
        Some("2")
    );
    let rest = s3
        .get(&format!(
            "/pages/obj?uploadId={upload}&max-parts=2&part-number-marker=4"
        ))
        .await;
    assert_eq!(numbers(&rest), ["5"]);
    assert_eq!(xml_value(&rest, "IsTruncated").as_deref(), Some("false"));
    assert_eq!(xml_value(&rest, "PartNumberMarker").as_deref(), Some("4"));
    assert_eq!(
        code(
            &s3.get(&format!("/pages/obj?uploadId={upload}&max-parts=x"))
                .await
        ),
        err(400, "InvalidArgument")
    );
    assert_eq!(
        code(
            &s3.get(&format!(
                "/pages/obj?uploadId={upload}&part-number-marker=-1"
            ))
            .await
        ),
        err(400, "InvalidArgument")
    );

    // Uploads: two of "a/1", one of "a/2", one of "b"; paged by key and upload id markers.
    let mut ids = vec![upload.clone()];
    for key in ["a/1", "a/1", "a/2", "b"] {
        ids.push(start_upload(&s3, &format!("/pages/{key}"), &[]).await);
    }
    let uploads = |reply: &Reply| -> Vec<(String, String)> {
        let text = reply.text();
        text.split("<Upload>")
            .skip(1)
            .map(|u| {
                let field = |tag: &str| {
                    let start = u.find(&format!("<{tag}>")).unwrap() + tag.len() + 2;
                    u[start..start + u[start..].find('<').unwrap()].to_string()
                };
                (field("Key"), field("UploadId"))
            })
            .collect()
    };
    let page = s3.get("/pages?uploads&max-uploads=2").await;
    let listed = uploads(&page);
    assert_eq!(
        listed,
        [
            ("a/1".to_string(), ids[1].clone()),
            ("a/1".into(), ids[2].clone())
        ]
    );
    assert_eq!(xml_value(&page, "IsTruncated").as_deref(), Some("true"));
    assert_eq!(xml_value(&page, "NextKeyMarker").as_deref(), Some("a/1"));
    assert_eq!(xml_value(&page, "NextUploadIdMarker"), Some(ids[2].clone()));
    let next = s3
        .get(&format!(
            "/pages?uploads&max-uploads=2&key-marker=a%2F1&upload-id-marker={}",
            ids[2]
        ))
        .await;
    assert_eq!(
        uploads(&next),
        [
            ("a/2".to_string(), ids[3].clone()),
            ("b".into(), ids[4].clone())
        ]
    );
    let after_key = s3.get("/pages?uploads&key-marker=a%2F2").await;
    assert_eq!(
        uploads(&after_key),
        [
            ("b".to_string(), ids[4].clone()),
            ("obj".into(), ids[0].clone())
        ]
    );
    let rolled = s3.get("/pages?uploads&delimiter=%2F").await;
    assert!(rolled
        .text()
        .contains("<CommonPrefixes><Prefix>a/</Prefix></CommonPrefixes>"));
    assert_eq!(uploads(&rolled).len(), 2, "b and obj");
    let prefixed = s3.get("/pages?uploads&prefix=a%2F2").await;
    assert_eq!(uploads(&prefixed), [("a/2".to_string(), ids[3].clone())]);
    assert_eq!(
        code(&s3.get("/pages?uploads&max-uploads=many").await),
        err(400, "InvalidArgument")
    );
}

fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

fn crc32(data: &[u8]) -> String {
    b64(&crc32fast::hash(data).to_be_bytes())
}

fn crc32c(data: &[u8]) -> String {
    b64(&crc32c::crc32c(data).to_be_bytes())
}

#[tokio::test(flavor = "multi_thread")]
async fn multipart_checksums() {
    let cluster = TestCluster::start();
    let s3 = cluster.client();
    s3.put("/sums", Bytes::new()).await;
    let create = |headers: &'static [(&'static str, &'static str)]| {
        let s3 = &s3;
        async move {
            s3.send("POST", "/sums/obj?uploads", headers, Bytes::new())
                .await
        }
    };
    for bad in [
        &[("x-amz-checksum-algorithm", "MD5")][..],
        &[("x-amz-checksum-type", "COMPOSITE")],
        &[
            ("x-amz-checksum-algorithm", "SHA256"),
            ("x-amz-checksum-type", "FULL_OBJECT"),
        ],
        &[
            ("x-amz-checksum-algorithm", "CRC64NVME"),
            ("x-amz-checksum-type", "COMPOSITE"),
        ],
        &[
            ("x-amz-checksum-algorithm", "CRC32"),
            ("x-amz-checksum-type", "WHOLE"),
        ],
    ] {
        assert_eq!(
            code(&create(bad).await),
            err(400, "InvalidRequest"),
            "{bad:?}"
        );
    }

    // COMPOSITE CRC32: the CRC32 of the parts' CRC32s, "-2".
    let created = create(&[("x-amz-checksum-algorithm", "crc32")]).await;
    assert_eq!(created.header("x-amz-checksum-algorithm"), Some("CRC32"));
    assert_eq!(created.header("x-amz-checksum-type"), Some("COMPOSITE"));
    let upload = xml_value(&created, "UploadId").unwrap();
    let one = random_bytes(5 << 20, 1);
    let two = random_bytes(1000, 2);
    let part = |n: u32, body: &[u8], headers: &[(&str, &str)]| {
        let (s3, path, body) = (
            &s3,
            format!("/sums/obj?partNumber={n}&uploadId={upload}"),
            Bytes::copy_from_slice(body),
        );
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        async move {
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            s3.send("PUT", &path, &headers, body).await
        }
    };
    let first = part(1, &one, &[("x-amz-checksum-crc32", &crc32(&one))]).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(
        first.header("x-amz-checksum-crc32"),
        Some(crc32(&one).as_str())
    );
    assert_eq!(
        code(&part(2, &two, &[("x-amz-checksum-crc32c", &crc32c(&two))]).await),
        err(400, "InvalidRequest")
    );
    assert_eq!(
        code(&part(2, &two, &[("x-amz-checksum-crc32", &crc32(&one))]).await),
        err(400, "BadDigest")
    );
    // A part sent without the checksum gets it computed.
    let second = part(2, &two, &[]).await;
    assert_eq!(second.status, 200);
    let listed = s3.get(&format!("/sums/obj?uploadId={upload}")).await.text();
    assert!(
        listed.contains(&format!("<ChecksumCRC32>{}</ChecksumCRC32>", crc32(&two))),
        "{listed}"
    );
    assert!(listed.contains("<ChecksumAlgorithm>CRC32</ChecksumAlgorithm>"));
    let etags = [
        first.header("etag").unwrap().to_string(),
        second.header("etag").unwrap().to_string(),
    ];
    let listing_sum = |sum1: &str| {
        format!(
            "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{}</ETag><ChecksumCRC32>{sum1}</ChecksumCRC32></Part>\
             <Part><PartNumber>2</PartNumber><ETag>{}</ETag></Part></CompleteMultipartUpload>",
            etags[0], etags[1]
        )
    };
    let complete_path = format!("/sums/obj?uploadId={upload}");
    let wrong_part = s3
        .send(
            "POST",
            &complete_path,
            &[],
            Bytes::from(listing_sum(&crc32(b"x"))),
        )
        .await;
    assert_eq!(code(&wrong_part), err(400, "InvalidPart"));
    let wrong_whole = s3
        .send(
            "POST",
            &complete_path,
            &[("x-amz-checksum-crc32", &crc32(b"x"))],
            Bytes::from(listing_sum(&crc32(&one))),
        )
        .await;
    assert_eq!(code(&wrong_whole), err(400, "BadDigest"));
    let mut raw = STANDARD.decode(crc32(&one)).unwrap();
    raw.extend(STANDARD.decode(crc32(&two)).unwrap());
    let composite = format!("{}-2", crc32(&raw));
    let done = s3
        .send(
            "POST",
            &complete_path,
            &[("x-amz-checksum-crc32", &composite)],
            Bytes::from(listing_sum(&crc32(&one))),
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.text());
    assert_eq!(xml_value(&done, "ChecksumCRC32"), Some(composite.clone()));
    assert_eq!(
        xml_value(&done, "ChecksumType").as_deref(),
        Some("COMPOSITE")
    );
    let mode = [("x-amz-checksum-mode", "ENABLED")];
    let head = s3.send("HEAD", "/sums/obj", &mode, Bytes::new()).await;
    assert_eq!(
        head.header("x-amz-checksum-crc32"),
        Some(composite.as_str())
    );
    assert_eq!(head.header("x-amz-checksum-type"), Some("COMPOSITE"));
    let part_head = s3
        .send("HEAD", "/sums/obj?partNumber=1", &mode, Bytes::new())
        .await;
    assert_eq!(
        part_head.header("x-amz-checksum-crc32"),
        Some(crc32(&one).as_str())
    );
    assert_eq!(
        s3.head("/sums/obj").await.header("x-amz-checksum-crc32"),
        None
    );

    // FULL_OBJECT CRC32C: the CRC32C of the whole object, combined from the parts'.
    let created = s3
        .send(
            "POST",
            "/sums/full?uploads",
            &[
                ("x-amz-checksum-algorithm", "CRC32C"),
                ("x-amz-checksum-type", "FULL_OBJECT"),
            ],
            Bytes::new(),
        )
        .await;
    assert_eq!(created.header("x-amz-checksum-type"), Some("FULL_OBJECT"));
    let upload = xml_value(&created, "UploadId").unwrap();
    let mut etags = Vec::new();
    for (n, body) in [(1, &one), (2, &two)] {
        let reply = s3
            .send(
                "PUT",
                &format!("/sums/full?partNumber={n}&uploadId={upload}"),
                &[("x-amz-checksum-crc32c", &crc32c(body))],
                Bytes::copy_from_slice(body),
            )
            .await;
        etags.push(reply.header("etag").unwrap().to_string());
    }
    let whole: Vec<u8> = [one.as_slice(), two.as_slice()].concat();
    let done = s3
        .send(
            "POST",
            &format!("/sums/full?uploadId={upload}"),
            &[("x-amz-checksum-crc32c", &crc32c(&whole))],
            Bytes::from(complete_body(&etags)),
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.text());
    let head = s3.send("HEAD", "/sums/full", &mode, Bytes::new()).await;
    assert_eq!(
        head.header("x-amz-checksum-crc32c"),
        Some(crc32c(&whole).as_str())
    );

    // A part copied into an upload with a checksum gets its checksum computed.
    let created = s3
        .send(
            "POST",
            "/sums/copied?uploads",
            &[("x-amz-checksum-algorithm", "CRC32")],
            Bytes::new(),
        )
        .await;
    let upload = xml_value(&created, "UploadId").unwrap();
    let copied = s3
        .send(
            "PUT",
            &format!("/sums/copied?partNumber=1&uploadId={upload}"),
            &[
                ("x-amz-copy-source", "/sums/full"),
                ("x-amz-copy-source-range", "bytes=0-9"),
            ],
            Bytes::new(),
        )
        .await;
    assert_eq!(copied.status, 200, "{}", copied.text());
    assert_eq!(xml_value(&copied, "ChecksumCRC32"), Some(crc32(&one[..10])));
    assert_eq!(head.header("x-amz-checksum-type"), Some("FULL_OBJECT"));
}
