//! Access keys across gateways and nodes: a key created through one gateway works through
//! another at once, a deleted key is refused by every gateway within 5 seconds, the key table
//! survives a node down while it changes, nodes keep secrets only sealed, and ACLs hold with
//! holders down and a gateway restarted. The permission matrix is driven through boto3 and the
//! aws CLI (tests/clients/test_access.py, test_acl.py), and its core through this crate's
//! client here.

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

/// One cell's operation: method, path (`{caller}` is replaced, so that writes do not meet),
/// body, the permission it needs, and what a caller allowed to ask gets.
struct Cell {
    method: &'static str,
    path: &'static str,
    body: &'static str,
    needs: &'static str,
    allowed: (u16, &'static str),
}

const CELLS: &[Cell] = &[
    Cell {
        method: "GET",
        path: "/matrix/doc",
        body: "",
        needs: "read",
        allowed: (200, ""),
    },
    Cell {
        method: "HEAD",
        path: "/matrix/doc",
        body: "",
        needs: "read",
        allowed: (200, ""),
    },
    Cell {
        method: "GET",
        path: "/matrix?list-type=2",
        body: "",
        needs: "read",
        allowed: (200, ""),
    },
    Cell {
        method: "GET",
        path: "/matrix?versioning",
        body: "",
        needs: "read",
        allowed: (200, ""),
    },
    Cell {
        method: "PUT",
        path: "/matrix/new-{caller}",
        body: "x",
        needs: "write",
        allowed: (200, ""),
    },
    Cell {
        method: "DELETE",
        path: "/matrix/gone-{caller}",
        body: "",
        needs: "write",
        allowed: (204, ""),
    },
    Cell {
        method: "POST",
        path: "/matrix/up-{caller}?uploads",
        body: "",
        needs: "write",
        allowed: (200, ""),
    },
    Cell {
        method: "PUT",
        path: "/matrix/doc?tagging",
        body: "<Tagging><TagSet><Tag><Key>a</Key><Value>b</Value></Tag></TagSet></Tagging>",
        needs: "write",
        allowed: (200, ""),
    },
    Cell {
        method: "PUT",
        path: "/matrix?tagging",
        body: "<Tagging><TagSet><Tag><Key>a</Key><Value>b</Value></Tag></TagSet></Tagging>",
        needs: "owner",
        allowed: (204, ""),
    },
    Cell {
        method: "GET",
        path: "/matrix?policy",
        body: "",
        needs: "owner",
        allowed: (404, "NoSuchBucketPolicy"),
    },
    Cell {
        method: "DELETE",
        path: "/matrix?cors",
        body: "",
        needs: "owner",
        allowed: (204, ""),
    },
];

#[tokio::test(flavor = "multi_thread")]
async fn each_caller_gets_exactly_what_its_permissions_allow() {
    let cluster = TestCluster::start();
    let admin = cluster.client();
    assert_eq!(admin.put("/matrix", Bytes::new()).await.status, 200);
    assert_eq!(admin.put("/matrix/doc", "hello").await.status, 200);
    let mut keyed = vec![("admin", admin.clone(), vec!["read", "write", "owner"])];
    for (name, grant, may) in [
        ("nobody", None, vec![]),
        ("reader", Some(r#""read": true"#), vec!["read"]),
        ("writer", Some(r#""write": true"#), vec!["write"]),
        (
            "owner",
            Some(r#""read": true, "write": true, "owner": true"#),
            vec!["read", "write", "owner"],
        ),
    ] {
        let (id, secret) = create_key(&admin, name).await;
        if let Some(grant) = grant {
            allow(&admin, &id, "matrix", grant).await;
        }
        keyed.push((name, S3Client::new(&cluster.endpoint, &id, &secret), may));
    }
    let (reader_id, _) = create_key(&admin, "known").await;
    let refused = [
        (
            "unknown",
            S3Client::new(&cluster.endpoint, "TKNOSUCHKEY0000000000", "x"),
            err(403, "InvalidAccessKeyId"),
        ),
        (
            "wrong-secret",
            S3Client::new(&cluster.endpoint, &reader_id, "wrong"),
            err(403, "SignatureDoesNotMatch"),
        ),
    ];

    let mut cells = 0;
    for cell in CELLS {
        let md5 = common::content_md5(cell.body.as_bytes());
        let headers = [("content-md5", md5.as_str())];
        let check = |caller: &str, got: (u16, String), want: (u16, String)| {
            // A HEAD's answer has no body: only its status tells.
            let want = match cell.method {
                "HEAD" => (want.0, String::new()),
                _ => want,
            };
            assert_eq!(got, want, "{caller}: {} {}", cell.method, cell.path);
        };
        let answer = |reply: common::Reply| match (reply.status, cell.method) {
            (200..=299, _) | (_, "HEAD") => (reply.status, String::new()),
            _ => code(&reply),
        };
        for (caller, client, may) in &keyed {
            let path = cell.path.replace("{caller}", caller);
            let reply = client
                .send(cell.method, &path, &headers, Bytes::from(cell.body))
                .await;
            let want = match may.contains(&cell.needs) {
                true => (cell.allowed.0, cell.allowed.1.to_string()),
                false => err(403, "AccessDenied"),
            };
            check(caller, answer(reply), want);
        }
        for (caller, client, want) in &refused {
            let reply = client
                .send(cell.method, cell.path, &headers, Bytes::from(cell.body))
                .await;
            check(caller, answer(reply), want.clone());
        }
        let path = cell.path.replace("{caller}", "anonymous");
        let reply = admin
            .raw(cell.method, &path, &[], Bytes::from(cell.body))
            .await;
        check("anonymous", answer(reply), err(403, "AccessDenied"));
        cells += keyed.len() + refused.len() + 1;
    }
    println!("{cells} cells");
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
