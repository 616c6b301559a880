//! Access keys across gateways and nodes: a key created through one gateway works through
//! another at once, a deleted key is refused by every gateway within 5 seconds, the key table
//! survives a node down while it changes, nodes keep secrets only sealed, and ACLs hold with
//! holders down and a gateway restarted. The permission matrix is driven through boto3 and the
//! aws CLI (tests/clients/test_access.py, test_acl.py).

mod common;

use bytes::Bytes;
use common::{code, err, S3Client, TestCluster};
use std::time::{Duration, Instant};

/// A new key through the admin API: its id and secret.
async fn create_key(admin: &S3Client, name: &str) -> (String, String) {
    let body = format!(r#"{{"name": "{name}", "create_bucket": false}}"#);
    let reply = admin
        .send("POST", "/_tessera/keys", &[], Bytes::from(body))
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let key: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    (
        key["id"].as_str().unwrap().to_string(),
        key["secret"].as_str().unwrap().to_string(),
    )
}

async fn allow(admin: &S3Client, id: &str, bucket: &str, permissions: &str) {
    let reply = admin
        .send(
            "POST",
            &format!("/_tessera/keys/{id}/allow"),
            &[],
            Bytes::from(format!(r#"{{"bucket": "{bucket}", {permissions}}}"#)),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_reach_every_gateway_and_a_deleted_one_is_refused_within_5_s() {
    let mut cluster = TestCluster::start();
    let second = cluster.second_gateway();
    let admin = cluster.client();
    assert_eq!(admin.put("/shared", Bytes::new()).await.status, 200);
    assert_eq!(admin.put("/shared/doc", "hello").await.status, 200);
    let (id, secret) = create_key(&admin, "reader").await;
    allow(&admin, &id, "shared", r#""read": true"#).await;

    // Created through the first gateway, used at once through the second (whose cached key
    // table does not have it yet).
    let through_second = S3Client::new(&second, &id, &secret);
    let got = through_second.get("/shared/doc").await;
    assert_eq!((got.status, got.text().as_str()), (200, "hello"));
    assert_eq!(
        code(&through_second.put("/shared/other", "x").await),
        err(403, "AccessDenied")
    );

    let deleted = admin
        .send("DELETE", &format!("/_tessera/keys/{id}"), &[], Bytes::new())
        .await;
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    let start = Instant::now();
    loop {
        let reply = through_second.get("/shared/doc").await;
        if code(&reply) == err(403, "InvalidAccessKeyId") {
            break;
        }
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the second gateway still takes a key deleted {:?} ago",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "deleted key refused by the second gateway after {:?}",
        start.elapsed()
    );
    let through_first = S3Client::new(&cluster.endpoint, &id, &secret);
    assert_eq!(
        code(&through_first.get("/shared/doc").await),
        err(403, "InvalidAccessKeyId")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_key_table_survives_nodes_down_and_holds_no_secret_in_the_clear() {
    // A write quorum of k, so that objects too can be written with two nodes down.
    let mut cluster = TestCluster::start_with(&["--write-quorum", "4"]);
    let admin = cluster.client();
    assert_eq!(admin.put("/kept", Bytes::new()).await.status, 200);
    // Two nodes down while the key is created and granted: a majority takes the records.
    cluster.kill("z1-n1");
    cluster.kill("z2-n1");
    let (id, secret) = create_key(&admin, "writer").await;
    allow(&admin, &id, "kept", r#""read": true, "write": true"#).await;
    cluster.restart("z1-n1");
    cluster.restart("z2-n1");
    // Two other nodes down, and the gateway restarted (its cache gone): the key still works.
    cluster.kill("z3-n1");
    cluster.kill("z3-n2");
    cluster.kill("gateway");
    cluster.restart("gateway");
    let writer = S3Client::new(&cluster.endpoint, &id, &secret);
    assert_eq!(writer.put("/kept/a", "data").await.status, 200);
    assert_eq!(writer.get("/kept/a").await.text(), "data");
    assert_eq!(
        code(&writer.delete("/kept").await),
        err(403, "AccessDenied")
    );

    // No file of the cluster (node data, configs, logs) holds the secret in the clear; the
    // configured key's secret, in the gateway's config, shows that the search finds one.
    let holding = |needle: &str| files_holding(&cluster.path(), needle.as_bytes());
    assert_eq!(holding(&secret), Vec::<String>::new());
    assert!(holding(common::SECRET_KEY)
        .iter()
        .any(|f| f.ends_with("gateway.toml")));
}

#[tokio::test(flavor = "multi_thread")]
async fn acls_hold_with_two_holders_down_and_the_gateway_restarted() {
    let mut cluster = TestCluster::start();
    let admin = cluster.client();
    let public = [("x-amz-acl", "public-read")];
    let created = admin.send("PUT", "/site", &public, Bytes::new()).await;
    assert_eq!(created.status, 200, "{}", created.text());
    for key in ["small.js", "large.bin"] {
        let body = Bytes::from(common::random_bytes(
            if key == "small.js" { 100 } else { 3 << 20 },
            7,
        ));
        assert_eq!(
            admin
                .send("PUT", &format!("/site/{key}"), &[], body)
                .await
                .status,
            200
        );
    }
    let anonymous = |path: &str| {
        let path = path.to_string();
        let admin = &admin;
        async move { admin.raw("GET", &path, &[], Bytes::new()).await.status }
    };
    assert_eq!(anonymous("/site/small.js").await, 403);
    // PutObjectAcl makes a new revision of each version on its holders.
    for key in ["small.js", "large.bin"] {
        let put = admin
            .send("PUT", &format!("/site/{key}?acl"), &public, Bytes::new())
            .await;
        assert_eq!(put.status, 200, "{}", put.text());
    }
    assert_eq!(anonymous("/site/small.js").await, 200);

    // Two nodes of different zones down and the gateway restarted: the bucket's ACL (system
    // table) and the objects' (their records) are read from what is left.
    cluster.kill("z1-n1");
    cluster.kill("z2-n2");
    cluster.kill("gateway");
    cluster.restart("gateway");
    let admin = cluster.client();
    let anonymous = |path: &'static str| {
        let admin = &admin;
        async move { admin.raw("GET", path, &[], Bytes::new()).await.status }
    };
    assert_eq!(anonymous("/site?list-type=2").await, 200);
    assert_eq!(anonymous("/site/small.js").await, 200);
    assert_eq!(anonymous("/site/large.bin").await, 200);
    assert_eq!(anonymous("/site/missing").await, 403);
    // A change needs a write quorum (five of the six holders here): with one node back.
    cluster.restart("z1-n1");
    let private = [("x-amz-acl", "private")];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let put = admin
            .send("PUT", "/site/large.bin?acl", &private, Bytes::new())
            .await;
        if put.status == 200 {
            break;
        }
        // Until the gateway's probes see the node back.
        assert!(
            put.status == 503 && Instant::now() < deadline,
            "{}",
            put.text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(anonymous("/site/large.bin").await, 403);
    let acl = admin.get("/site/small.js?acl").await.text();
    assert!(
        acl.contains("http://acs.amazonaws.com/groups/global/AllUsers"),
        "{acl}"
    );
}

/// Files under `root` whose bytes contain `needle`.
fn files_holding(root: &std::path::Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(path) = pending.pop() {
        if path.is_dir() {
            pending.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else if let Ok(bytes) = std::fs::read(&path) {
            if bytes.windows(needle.len()).any(|w| w == needle) {
                found.push(path.display().to_string());
            }
        }
    }
    found
}
