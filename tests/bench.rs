//! `tessera bench` against a dev cluster: small PUT and GET runs whose JSON report adds up.

mod common;

use common::{TestCluster, ACCESS_KEY, SECRET_KEY};
use std::process::Command;

fn bench(cluster: &TestCluster, workload: &str) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["bench", "--endpoint", &cluster.endpoint])
        .args(["--bucket", "bench-test", "--workload", workload])
        .args(["--size", "64KiB", "--objects", "50", "--concurrency", "4"])
        .args(["--duration", "120", "--json"])
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env_remove("TESSERA_ACCESS_KEY_ID")
        .env_remove("TESSERA_SECRET_ACCESS_KEY")
        .output()
        .expect("running tessera bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tessera bench {workload}: {stderr}");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{stderr}", String::from_utf8_lossy(&out.stdout)))
}

fn check(report: &serde_json::Value, op: &str) {
    let ops = report["operations"].as_array().expect("operations");
    assert_eq!(ops.len(), 1, "{report}");
    let r = &ops[0];
    assert_eq!(r["op"], op, "{report}");
    assert_eq!(r["count"], 50, "{report}");
    assert_eq!(r["errors"], 0, "{report}");
    assert_eq!(r["bytes"], 50 * 65536, "{report}");
    assert!(r["mib_per_s"].as_f64().unwrap() > 0.0, "{report}");
    assert!(r["objects_per_s"].as_f64().unwrap() > 0.0, "{report}");
    let latency = &r["latency_ms"];
    let p50 = latency["p50"].as_f64().unwrap();
    assert!(
        p50 > 0.0 && p50 <= latency["max"].as_f64().unwrap(),
        "{report}"
    );
}

#[test]
fn bench_put_and_get_report_what_they_did() {
    let cluster = TestCluster::start();
    let put = bench(&cluster, "put");
    check(&put, "PUT");
    assert_eq!(put["workload"], "put");
    let get = bench(&cluster, "get");
    check(&get, "GET");
    // GET wrote its own objects first: 50 (fewer than the size cap), not counted above.
    assert_eq!(get["keys"], 50);
    // Everything is there: the PUT run's 50 keys and the GET run's 50, listed back.
    let s3 = cluster.client();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listing = rt.block_on(s3.get("/bench-test?list-type=2&prefix=bench%2F"));
    assert_eq!(listing.status, 200);
    assert_eq!(listing.text().matches("<Key>").count(), 100);
}
