//! Bucket versioning (version ids, delete markers, ListObjectVersions with paging, deleting and
//! copying versions) and conditional writes racing through two gateways, with AWS's error codes.

mod common;

use bytes::Bytes;
use common::{
    code, content_md5, err, md5_hex, xml_values, Reply, S3Client, TestCluster, ACCESS_KEY,
    SECRET_KEY,
};

async fn set_versioning(s3: &S3Client, bucket: &str, status: &str) -> Reply {
    let body =
        format!("<VersioningConfiguration><Status>{status}</Status></VersioningConfiguration>");
    common::put_xml(s3, &format!("/{bucket}?versioning"), &body).await
}

/// (kind, key, version id, is latest) of every entry of one ListObjectVersions page, in order.
fn versions(reply: &Reply) -> Vec<(String, String, String, bool)> {
    let text = reply.text();
    let mut out = Vec::new();
    let mut rest = text.as_str();
    loop {
        let next = ["Version", "DeleteMarker"]
            .into_iter()
            .filter_map(|kind| rest.find(&format!("<{kind}>")).map(|at| (at, kind)))
            .min();
        let Some((at, kind)) = next else {
            break;
        };
        let close = format!("</{kind}>");
        let end = rest[at..].find(&close).unwrap() + at;
        let entry = &rest[at..end];
        out.push((
            kind.to_string(),
            xml_values(entry, "Key")[0].clone(),
            xml_values(entry, "VersionId")[0].clone(),
            xml_values(entry, "IsLatest")[0] == "true",
        ));
        rest = &rest[end + close.len()..];
    }
    out
}

async fn delete_objects(s3: &S3Client, bucket: &str, objects: &[(&str, &str)]) -> Reply {
    let body: String = objects
        .iter()
        .map(|(key, version)| {
            format!("<Object><Key>{key}</Key><VersionId>{version}</VersionId></Object>")
        })
        .collect();
    let body = format!("<Delete>{body}</Delete>");
    s3.send(
        "POST",
        &format!("/{bucket}?delete"),
        &[("content-md5", &content_md5(body.as_bytes()))],
        Bytes::from(body),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn versions_delete_markers_and_listings() {
    let cluster = TestCluster::start();
    let s3 = cluster.client();
    assert_eq!(s3.put("/ver", Bytes::new()).await.status, 200);
    let state = s3.get("/ver?versioning").await;
    assert_eq!(state.status, 200);
    assert!(!state.text().contains("<Status>"), "{}", state.text());

    // Error paths of PutBucketVersioning.
    let body = "<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>";
    let no_md5 = s3
        .send("PUT", "/ver?versioning", &[], Bytes::from(body))
        .await;
    assert_eq!(code(&no_md5), err(400, "InvalidRequest"));
    assert_eq!(
        code(&set_versioning(&s3, "ver", "On").await),
        err(400, "MalformedXML")
    );
    assert_eq!(
        code(&set_versioning(&s3, "no-such-ver", "Enabled").await),
        err(404, "NoSuchBucket")
    );
    assert_eq!(
        code(&s3.get("/no-such-ver?versioning").await),
        err(404, "NoSuchBucket")
    );

    // Before versioning: no version ids; the object is the null version.
    let first = s3.put("/ver/k", "one").await;
    assert_eq!(first.status, 200);
    assert_eq!(first.header("x-amz-version-id"), None);

    assert_eq!(set_versioning(&s3, "ver", "Enabled").await.status, 200);
    assert!(s3
        .get("/ver?versioning")
        .await
        .text()
        .contains("<Status>Enabled</Status>"));
    let v2 = s3
        .put("/ver/k", "two")
        .await
        .header("x-amz-version-id")
        .unwrap()
        .to_string();
    let v3 = s3
        .put("/ver/k", "three")
        .await
        .header("x-amz-version-id")
        .unwrap()
        .to_string();
    assert_eq!(v2.len(), 24);
    assert!(v3 > v2, "later versions have larger ids");
    let current = s3.get("/ver/k").await;
    assert_eq!(current.text(), "three");
    assert_eq!(current.header("x-amz-version-id"), Some(v3.as_str()));
    assert_eq!(
        s3.get(&format!("/ver/k?versionId={v2}")).await.text(),
        "two"
    );
    let null = s3.get("/ver/k?versionId=null").await;
    assert_eq!(null.text(), "one");
    assert_eq!(null.header("x-amz-version-id"), Some("null"));
    let head = s3.head(&format!("/ver/k?versionId={v2}")).await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("3"));
    assert_eq!(
        code(&s3.get("/ver/k?versionId=bogus").await),
        err(400, "InvalidArgument")
    );
    let missing = "0000000000000001000000ff";
    assert_eq!(
        code(&s3.get(&format!("/ver/k?versionId={missing}")).await),
        err(404, "NoSuchVersion")
    );

    // A delete makes a delete marker; the key then reads as missing.
    let deleted = s3.delete("/ver/k").await;
    assert_eq!(deleted.status, 204);
    assert_eq!(deleted.header("x-amz-delete-marker"), Some("true"));
    let marker = deleted.header("x-amz-version-id").unwrap().to_string();
    let gone = s3.get("/ver/k").await;
    assert_eq!(code(&gone), err(404, "NoSuchKey"));
    assert_eq!(gone.header("x-amz-delete-marker"), Some("true"));
    assert_eq!(gone.header("x-amz-version-id"), Some(marker.as_str()));
    assert_eq!(s3.head("/ver/k").await.status, 404);
    let by_id = s3.get(&format!("/ver/k?versionId={marker}")).await;
    assert_eq!(code(&by_id), err(405, "MethodNotAllowed"));
    assert_eq!(by_id.header("x-amz-delete-marker"), Some("true"));
    let listed = s3.get("/ver?list-type=2").await;
    assert!(!listed.text().contains("<Key>k</Key>"), "{}", listed.text());

    // ListObjectVersions: newest first, the marker latest; paged one entry at a time.
    let all = versions(&s3.get("/ver?versions").await);
    let expected = vec![
        (
            "DeleteMarker".to_string(),
            "k".to_string(),
            marker.clone(),
            true,
        ),
        ("Version".into(), "k".into(), v3.clone(), false),
        ("Version".into(), "k".into(), v2.clone(), false),
        ("Version".into(), "k".into(), "null".into(), false),
    ];
    assert_eq!(all, expected);
    let mut paged = Vec::new();
    let mut query = String::from("/ver?versions&max-keys=1");
    loop {
        let page = s3.get(&query).await;
        assert_eq!(page.status, 200, "{}", page.text());
        paged.extend(versions(&page));
        let text = page.text();
        if xml_values(&text, "IsTruncated")[0] != "true" {
            break;
        }
        let key = xml_values(&text, "NextKeyMarker")[0].clone();
        let version = xml_values(&text, "NextVersionIdMarker")[0].clone();
        query = format!("/ver?versions&max-keys=1&key-marker={key}&version-id-marker={version}");
    }
    assert_eq!(paged, expected);
    assert_eq!(
        code(&s3.get("/ver?versions&version-id-marker=null").await),
        err(400, "InvalidArgument")
    );
    for bad in [
        "/ver?versions&key-marker=k&version-id-marker=nope",
        "/ver?versions&max-keys=x",
        "/ver?versions&encoding-type=base64",
    ] {
        assert_eq!(
            code(&s3.get(bad).await),
            err(400, "InvalidArgument"),
            "{bad}"
        );
    }
    assert_eq!(
        code(&s3.get("/no-such-ver?versions").await),
        err(404, "NoSuchBucket")
    );
    assert_eq!(
        code(&s3.delete("/no-such-ver/k?versionId=null").await),
        err(404, "NoSuchBucket")
    );

    // Deleting the marker by id brings the object back; deleting versions reveals older ones.
    let undeleted = s3.delete(&format!("/ver/k?versionId={marker}")).await;
    assert_eq!(undeleted.status, 204);
    assert_eq!(undeleted.header("x-amz-delete-marker"), Some("true"));
    assert_eq!(undeleted.header("x-amz-version-id"), Some(marker.as_str()));
    assert_eq!(s3.get("/ver/k").await.text(), "three");
    assert_eq!(
        s3.delete(&format!("/ver/k?versionId={v3}")).await.status,
        204
    );
    assert_eq!(s3.get("/ver/k").await.text(), "two");
    assert_eq!(
        code(&s3.get(&format!("/ver/k?versionId={v3}")).await),
        err(404, "NoSuchVersion")
    );
    assert_eq!(
        s3.delete(&format!("/ver/k?versionId={missing}"))
            .await
            .status,
        204
    );
    assert_eq!(
        code(&s3.delete("/ver/k?versionId=x").await),
        err(400, "InvalidArgument")
    );

    // Copying a version, and restoring it over its own key.
    let copied = s3
        .send(
            "PUT",
            "/ver/copy",
            &[("x-amz-copy-source", "/ver/k?versionId=null")],
            Bytes::new(),
        )
        .await;
    assert_eq!(copied.status, 200, "{}", copied.text());
    assert_eq!(copied.header("x-amz-copy-source-version-id"), Some("null"));
    assert!(copied.header("x-amz-version-id").is_some());
    assert_eq!(s3.get("/ver/copy").await.text(), "one");
    let restored = s3
        .send(
            "PUT",
            "/ver/k",
            &[("x-amz-copy-source", "/ver/k?versionId=null")],
            Bytes::new(),
        )
        .await;
    assert_eq!(restored.status, 200, "{}", restored.text());
    assert_eq!(s3.get("/ver/k").await.text(), "one");
    let copy_marker = s3
        .delete("/ver/copy")
        .await
        .header("x-amz-version-id")
        .unwrap()
        .to_string();
    let from_marker = s3
        .send(
            "PUT",
            "/ver/other",
            &[(
                "x-amz-copy-source",
                &format!("/ver/copy?versionId={copy_marker}"),
            )],
            Bytes::new(),
        )
        .await;
    assert_eq!(code(&from_marker), err(400, "InvalidRequest"));
    let from_deleted = s3
        .send(
            "PUT",
            "/ver/other",
            &[("x-amz-copy-source", "/ver/copy")],
            Bytes::new(),
        )
        .await;
    assert_eq!(code(&from_deleted), err(404, "NoSuchKey"));

    // Tags of one version, leaving the version id and the other versions alone.
    let tagging = "<Tagging><TagSet><Tag><Key>t</Key><Value>v2</Value></Tag></TagSet></Tagging>";
    let tagged = s3
        .send(
            "PUT",
            &format!("/ver/k?tagging&versionId={v2}"),
            &[],
            Bytes::from(tagging),
        )
        .await;
    assert_eq!(tagged.status, 200, "{}", tagged.text());
    let tags = s3.get(&format!("/ver/k?tagging&versionId={v2}")).await;
    assert!(tags.text().contains("<Value>v2</Value>"), "{}", tags.text());
    assert!(!s3.get("/ver/k?tagging").await.text().contains("<Tag>"));
    assert_eq!(
        s3.get(&format!("/ver/k?versionId={v2}")).await.text(),
        "two"
    );
    assert_eq!(
        code(&s3.get(&format!("/ver/k?tagging&versionId={missing}")).await),
        err(404, "NoSuchVersion")
    );

    // Suspended: new writes are the null version, replacing the old null one.
    assert_eq!(set_versioning(&s3, "ver", "Suspended").await.status, 200);
    assert!(s3
        .get("/ver?versioning")
        .await
        .text()
        .contains("<Status>Suspended</Status>"));
    let suspended = s3.put("/ver/k", "four").await;
    assert_eq!(suspended.header("x-amz-version-id"), Some("null"));
    assert_eq!(s3.get("/ver/k?versionId=null").await.text(), "four");
    let ids: Vec<String> = versions(&s3.get("/ver?versions&prefix=k").await)
        .into_iter()
        .map(|v| v.2)
        .collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert_eq!(ids[0], "null");
    assert!(ids.contains(&v2));
    let null_marker = s3.delete("/ver/k").await;
    assert_eq!(null_marker.header("x-amz-delete-marker"), Some("true"));
    assert_eq!(null_marker.header("x-amz-version-id"), Some("null"));
    assert_eq!(
        code(&s3.get("/ver/k?versionId=null").await),
        err(405, "MethodNotAllowed")
    );

    // DeleteObjects by version.
    let batch = delete_objects(&s3, "ver", &[("k", "null"), ("k", &v2), ("k", "bad")]).await;
    assert_eq!(batch.status, 200, "{}", batch.text());
    let text = batch.text();
    assert_eq!(text.matches("<Deleted>").count(), 2, "{text}");
    assert!(text.contains("<VersionId>null</VersionId><DeleteMarker>true</DeleteMarker>"));
    assert!(text.contains("<Code>InvalidArgument</Code>"));
    let left: Vec<String> = versions(&s3.get("/ver?versions&prefix=k").await)
        .into_iter()
        .map(|v| v.2)
        .collect();
    assert_eq!(left.len(), 1, "the restored copy is left: {left:?}");

    // Delimiters roll up versions of keys under a common prefix.
    for key in ["d/1", "d/2", "e"] {
        s3.put(&format!("/ver/{key}"), key).await;
    }
    let rolled = s3.get("/ver?versions&delimiter=%2F&prefix=").await.text();
    assert_eq!(xml_values(&rolled, "Prefix"), ["", "d/"], "{rolled}");
    assert!(!rolled.contains("<Key>d/1</Key>"));

    // DeleteObjects without a version id makes delete markers.
    assert_eq!(set_versioning(&s3, "ver", "Enabled").await.status, 200);
    let body = "<Delete><Object><Key>e</Key></Object></Delete>";
    let marked = s3
        .send(
            "POST",
            "/ver?delete",
            &[("content-md5", &content_md5(body.as_bytes()))],
            Bytes::from(body),
        )
        .await
        .text();
    assert!(
        marked.contains("<Key>e</Key><DeleteMarker>true</DeleteMarker><DeleteMarkerVersionId>"),
        "{marked}"
    );
    assert_eq!(xml_values(&marked, "DeleteMarkerVersionId")[0].len(), 24);
    assert_eq!(
        s3.get("/ver/e").await.header("x-amz-delete-marker"),
        Some("true")
    );

    // A bucket with versions or delete markers is not empty.
    assert_eq!(code(&s3.delete("/ver").await), err(409, "BucketNotEmpty"));
    let every: Vec<(String, String)> = versions(&s3.get("/ver?versions").await)
        .into_iter()
        .map(|v| (v.1, v.2))
        .collect();
    let refs: Vec<(&str, &str)> = every
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(delete_objects(&s3, "ver", &refs).await.status, 200);
    assert_eq!(s3.delete("/ver").await.status, 204);

    // An unversioned bucket keeps today's behaviour: no ids, no markers listed.
    s3.put("/plain", Bytes::new()).await;
    s3.put("/plain/a", "a").await;
    let plain = s3.delete("/plain/a").await;
    assert_eq!(plain.header("x-amz-delete-marker"), None);
    assert_eq!(s3.get("/plain/a").await.header("x-amz-delete-marker"), None);
    assert!(versions(&s3.get("/plain?versions").await).is_empty());
    s3.put("/plain/b", "b").await;
    assert_eq!(
        versions(&s3.get("/plain?versions").await),
        [(
            "Version".to_string(),
            "b".to_string(),
            "null".to_string(),
            true
        )]
    );
    assert_eq!(s3.delete("/plain/b?versionId=null").await.status, 204);
    assert_eq!(s3.get("/plain/b").await.status, 404);
}

/// Sixteen writers, half through each gateway, PUT one key at once with the same condition:
/// exactly one succeeds and the others get 412 or 409. Returns the body that won.
async fn race(gateways: &[S3Client; 2], key: &str, condition: (&str, &str), name: &str) -> String {
    const WRITERS: usize = 16;
    let results = futures::future::join_all((0..WRITERS).map(|w| async move {
        let body = format!("{name} {w}");
        let reply = gateways[w % 2]
            .send("PUT", key, &[condition], Bytes::from(body.clone()))
            .await;
        (reply, body)
    }))
    .await;
    for (reply, _) in &results {
        assert!(
            [200, 409, 412].contains(&reply.status),
            "{key} {condition:?}: unexpected {} {}",
            reply.status,
            reply.text()
        );
    }
    let mut winners = results.into_iter().filter(|(r, _)| r.status == 200);
    let (_, won) = winners.next().expect("one winner");
    assert_eq!(
        winners.count(),
        0,
        "{key} {condition:?}: more than one winner"
    );
    won
}

/// Conditional writes racing on one key through two gateways: exactly one wins each round.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_conditional_writes_have_one_winner() {
    let mut cluster = TestCluster::start();
    let second = cluster.second_gateway();
    let gateways = [
        cluster.client(),
        S3Client::new(&second, ACCESS_KEY, SECRET_KEY),
    ];
    assert_eq!(gateways[0].put("/race", Bytes::new()).await.status, 200);
    for round in 0..4 {
        let key = format!("/race/k{round}");
        // If-None-Match: * from every writer at once: the key is created exactly once.
        let first = race(&gateways, &key, ("if-none-match", "*"), "writer").await;
        assert_eq!(gateways[1].get(&key).await.text(), first, "round {round}");
        // If-Match on the winner's ETag from every writer at once: one replaces it.
        let etag = format!("\"{}\"", md5_hex(first.as_bytes()));
        let second = race(&gateways, &key, ("if-match", &etag), "second writer").await;
        assert_eq!(gateways[0].get(&key).await.text(), second, "round {round}");
    }

    // CompleteMultipartUpload with If-None-Match: * racing a PUT with it.
    let s3 = &gateways[0];
    let start = s3.send("POST", "/race/mp?uploads", &[], Bytes::new()).await;
    let upload = xml_values(&start.text(), "UploadId")[0].clone();
    let part = s3
        .put(&format!("/race/mp?partNumber=1&uploadId={upload}"), "part")
        .await;
    let etag = part.header("etag").unwrap().to_string();
    let body = format!(
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{etag}</ETag></Part></CompleteMultipartUpload>"
    );
    let complete_path = format!("/race/mp?uploadId={upload}");
    let (complete, put) = tokio::join!(
        s3.send(
            "POST",
            &complete_path,
            &[("if-none-match", "*")],
            Bytes::from(body),
        ),
        gateways[1].send(
            "PUT",
            "/race/mp",
            &[("if-none-match", "*")],
            Bytes::from("put")
        ),
    );
    let statuses = [complete.status, put.status];
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "complete {} {}, put {} {}",
        complete.status,
        complete.text(),
        put.status,
        put.text()
    );
    let expected = if complete.status == 200 {
        "part"
    } else {
        "put"
    };
    assert_eq!(s3.get("/race/mp").await.text(), expected);
}

/// A holder that missed the deletion of a version (paused meanwhile) does not bring it back.
#[tokio::test(flavor = "multi_thread")]
async fn purged_versions_stay_gone_when_a_holder_missed_it() {
    let cluster = TestCluster::start_with(&["--rpc-timeout-ms", "1000"]);
    let s3 = cluster.client();
    s3.put("/purge", Bytes::new()).await;
    assert_eq!(set_versioning(&s3, "purge", "Enabled").await.status, 200);
    s3.put("/purge/k", "one").await;
    let two = s3.put("/purge/k", "two").await;
    let v2 = two.header("x-amz-version-id").unwrap().to_string();
    cluster.signal("z1-n1", libc::SIGSTOP);
    let deleted = s3.delete(&format!("/purge/k?versionId={v2}")).await;
    cluster.signal("z1-n1", libc::SIGCONT);
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    for _ in 0..5 {
        assert_eq!(s3.get("/purge/k").await.text(), "one");
        assert_eq!(
            code(&s3.get(&format!("/purge/k?versionId={v2}")).await),
            err(404, "NoSuchVersion")
        );
    }
}

/// Healing a wiped node rebuilds every version and delete marker, not only the current ones.
#[tokio::test(flavor = "multi_thread")]
async fn a_wiped_node_gets_back_every_version() {
    let mut cluster = TestCluster::start();
    let s3 = cluster.client();
    s3.put("/vheal", Bytes::new()).await;
    assert_eq!(set_versioning(&s3, "vheal", "Enabled").await.status, 200);
    let mut versions = Vec::new();
    for i in 0..5u64 {
        let key = format!("/vheal/k{i}");
        // A version in fragment files, then a small one inline in the records.
        for data in [
            common::random_bytes(200_000, i),
            common::random_bytes(10, 100 + i),
        ] {
            let put = s3.put(&key, data.clone()).await;
            let id = put.header("x-amz-version-id").unwrap().to_string();
            versions.push((key.clone(), id, data));
        }
    }
    assert_eq!(s3.delete("/vheal/k0").await.status, 204);
    cluster.wipe("z2-n1");
    let progress = common::heal(&s3, "z2-n1").await;
    assert_eq!(progress["errors"], 0, "{progress}");
    assert_eq!(
        progress["keys_checked"], 11,
        "10 versions and a delete marker"
    );
    assert_eq!(progress["keys_repaired"], 11, "{progress}");
    assert_eq!(progress["versions_total"], 11, "{progress}");
    assert_eq!(progress["versions_listed"], 11, "{progress}");
    // The healed node plus three others serve every version.
    cluster.kill("z1-n1");
    cluster.kill("z3-n2");
    for (key, id, data) in &versions {
        let got = s3.get(&format!("{key}?versionId={id}")).await;
        assert_eq!(got.status, 200, "{key} {id}");
        assert!(got.body[..] == data[..], "{key} {id} after heal");
    }
    assert_eq!(s3.get("/vheal/k0").await.status, 404);
}
