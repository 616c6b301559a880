//! Acknowledged writes against failures of real processes: killed nodes, bitrot on disk, and
//! kill -9 of every process at once.

mod common;

use bytes::Bytes;
use common::{random_bytes, TestCluster};

fn sizes() -> Vec<(String, Vec<u8>)> {
    // The last is read over connections of its own (fragments past a lookup's `LOOKUP_FRAGMENT_MAX`).
    [
        100usize,
        4096,
        70_000,
        1 << 20,
        3 * (1 << 20) + 1,
        18 * (1 << 20) + 5,
    ]
    .iter()
    .enumerate()
    .map(|(i, &size)| {
        (
            format!("/f-bucket/obj{i}"),
            random_bytes(size, i as u64 + 100),
        )
    })
    .collect()
}

/// Creates `f-bucket` and writes `sizes()` into it.
async fn write_sizes(s3: &common::S3Client) -> Vec<(String, Vec<u8>)> {
    s3.put("/f-bucket", Bytes::new()).await;
    let objects = sizes();
    for (key, data) in &objects {
        assert_eq!(s3.put(key, data.clone()).await.status, 200);
    }
    objects
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_survive_two_dead_nodes_and_corrupt_fragments() {
    let mut cluster = TestCluster::start();
    let s3 = cluster.client();
    let objects = write_sizes(&s3).await;
    // Two nodes of different zones: 4+2 tolerates any two missing fragments.
    cluster.kill("z1-n1");
    cluster.kill("z2-n2");
    for (key, data) in &objects {
        let got = s3.get(key).await;
        assert_eq!(got.status, 200, "{key}: {}", got.text());
        assert!(
            got.body[..] == data[..],
            "{key} reads back identical with two nodes down"
        );
    }
    // With only four holders left a write cannot reach its quorum of five: refused, not partial.
    let refused = s3.put("/f-bucket/late", random_bytes(200_000, 7)).await;
    assert_eq!(refused.status, 503, "{}", refused.text());
    cluster.restart("z1-n1");
    cluster.restart("z2-n2");
    assert_eq!(
        s3.head("/f-bucket/late").await.status,
        404,
        "a refused write is not visible"
    );

    // Bitrot: flip a byte in the middle of two fragment files of the largest object.
    // Data fragments (slots 0 and 1), which reads use first: parity is only read when needed.
    let mut files: Vec<_> = cluster
        .fragment_files()
        .into_iter()
        .filter(|f| f.to_string_lossy().ends_with(".0") || f.to_string_lossy().ends_with(".1"))
        .collect();
    files.sort_by_key(|f| std::cmp::Reverse(std::fs::metadata(f).unwrap().len()));
    let mut originals = Vec::new();
    for file in files.iter().take(2) {
        let mut bytes = std::fs::read(file).unwrap();
        originals.push((file.clone(), bytes.clone()));
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x5A;
        std::fs::write(file, bytes).unwrap();
    }
    let (key, data) = objects.last().unwrap();
    let got = s3.get(key).await;
    assert!(
        got.body[..] == data[..],
        "corrupt blocks are detected and rebuilt from parity"
    );
    // The second range is long enough to be read over connections of its own.
    for (first, last) in [(1_000_000, 2_000_000), (5_000_000, 13_000_000)] {
        let range = format!("bytes={first}-{last}");
        let ranged = s3
            .send("GET", key, &[("range", &range)], Bytes::new())
            .await;
        assert!(ranged.body[..] == data[first..=last], "{range}");
    }
    // Read repair rewrites the corrupt fragments in the background, once a read has met them
    // (a read that got k good frames from others first does not see them: read again).
    let start = std::time::Instant::now();
    while !originals
        .iter()
        .all(|(file, original)| std::fs::read(file).is_ok_and(|b| b == *original))
    {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "timed out: fragments repaired"
        );
        assert!(s3.get(key).await.body[..] == data[..]);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Objects up to `small_object_threshold` (4 KiB in `tessera dev`) are coded 2+4, two being the
/// read quorum: with four of the six nodes dead they still read back from the two left, while an
/// object coded 4+2, inline or in files, needs four fragments and is refused cleanly. With a fifth
/// node dead, the small ones are refused too: one fragment is half of one.
#[tokio::test(flavor = "multi_thread")]
async fn small_objects_are_coded_two_of_six_and_survive_four_dead_nodes() {
    let mut cluster = TestCluster::start();
    let s3 = cluster.client();
    let mut objects = write_sizes(&s3).await;
    let inline = (
        "/f-bucket/inline-coded".to_string(),
        random_bytes(10_000, 9),
    );
    assert_eq!(s3.put(&inline.0, inline.1.clone()).await.status, 200);
    objects.push(inline);
    for node in ["z1-n1", "z1-n2", "z2-n1", "z3-n2"] {
        cluster.kill(node);
    }
    for (key, data) in &objects {
        let got = s3.get(key).await;
        if data.len() <= 4096 {
            assert_eq!(got.status, 200, "{key}: {}", got.text());
            assert!(
                got.body[..] == data[..],
                "{key} reads back from two holders"
            );
            assert_eq!(s3.head(key).await.status, 200, "{key}");
        } else {
            assert_eq!(
                got.status,
                503,
                "{key} ({} bytes): {}",
                data.len(),
                got.text()
            );
        }
    }
    cluster.kill("z2-n2");
    for (key, data) in objects.iter().filter(|(_, data)| !data.is_empty()) {
        let got = s3.get(key).await;
        assert_eq!(
            got.status,
            503,
            "{key} ({} bytes) from one holder",
            data.len()
        );
    }
}

/// A node down during writes gets what it missed back when it returns (by the gateway's heal,
/// and by reads that find it stale), after which any other two nodes may fail.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_that_missed_writes_is_repaired() {
    let mut cluster = TestCluster::start();
    let s3 = cluster.client();
    s3.put("/f-bucket", Bytes::new()).await;
    cluster.kill("z3-n2");
    let objects = sizes();
    for (key, data) in &objects {
        assert_eq!(
            s3.put(key, data.clone()).await.status,
            200,
            "W=5 of 6 holders"
        );
    }
    let files_on = |cluster: &TestCluster, node: &str| {
        cluster
            .fragment_files()
            .iter()
            .filter(|f| f.to_string_lossy().contains(&format!("/{node}/")))
            .count()
    };
    // Checked while it is down: once it is back, the heal may start at once.
    assert_eq!(files_on(&cluster, "z3-n2"), 0);
    cluster.restart("z3-n2");
    for (key, data) in &objects {
        let got = s3.get(key).await;
        assert!(
            got.body[..] == data[..],
            "{key}: {} {}",
            got.status,
            got.text()
        );
    }
    // Four of the objects are over the inline limit: each gets its fragment file back. The
    // inline ones get their records back, which only the end of the heal shows.
    common::wait_until(
        || files_on(&cluster, "z3-n2") == 4,
        "missed fragments rebuilt",
    )
    .await;
    common::wait_healed(&s3).await;
    // With the repaired node, any other two may now fail.
    cluster.kill("z1-n1");
    cluster.kill("z2-n1");
    for (key, data) in &objects {
        let got = s3.get(key).await;
        assert!(
            got.body[..] == data[..],
            "{key} readable using the repaired node: {} {}",
            got.status,
            if got.status == 200 {
                String::new()
            } else {
                got.text()
            }
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_writes_survive_kill_9_of_every_process() {
    let mut cluster = TestCluster::start();
    let s3 = cluster.client();
    let objects = write_sizes(&s3).await;
    assert_eq!(s3.delete("/f-bucket/obj0").await.status, 204);
    for process in common::NODES.iter().chain(["gateway"].iter()) {
        cluster.kill(process);
    }
    for process in common::NODES.iter().chain(["gateway"].iter()) {
        cluster.restart(process);
    }
    for (key, data) in &objects[1..] {
        let got = s3.get(key).await;
        assert_eq!(got.status, 200, "{key}: {}", got.text());
        assert!(got.body[..] == data[..], "{key} survived kill -9");
    }
    assert_eq!(
        s3.head("/f-bucket/obj0").await.status,
        404,
        "the delete survived too"
    );
}

/// A fragment file that nothing names (left by a write whose gateway died before any commit
/// reached the node) is removed once it is older than `orphan_age_secs`; the fragment files of
/// objects, multipart parts and hints stay.
#[tokio::test(flavor = "multi_thread")]
async fn orphaned_fragment_files_are_removed_and_nothing_else() {
    let mut cluster = TestCluster::start();
    let s3 = cluster.client();
    let objects = write_sizes(&s3).await;
    let kept = cluster.fragment_files();
    assert!(!kept.is_empty());
    let mut orphans = Vec::new();
    for (node, _) in cluster.nodes() {
        let dir = cluster.path().join(&node).join("fragments").join("ff");
        std::fs::create_dir_all(&dir).unwrap();
        let orphan = dir.join(format!("{}.0", "f".repeat(32)));
        std::fs::write(&orphan, b"a fragment nobody committed").unwrap();
        orphans.push(orphan);
        let age = Some(toml::Value::Integer(1));
        cluster.restart_with(&node, "orphan_age_secs", age);
    }
    common::wait_until(|| orphans.iter().all(|o| !o.exists()), "orphans removed").await;
    let mut left = cluster.fragment_files();
    let mut expected = kept.clone();
    left.sort();
    expected.sort();
    assert_eq!(left, expected, "only the orphans went");
    cluster.kill("z1-n1");
    cluster.kill("z2-n2");
    for (key, data) in &objects {
        let got = s3.get(key).await;
        assert_eq!(got.status, 200, "{key}");
        assert!(got.body[..] == data[..], "{key}");
    }
}

/// Bitrot in data nobody reads: the scrubber finds fragment files that fail their hashes, are cut
/// short or are gone, and the gateway heals the node back to the very bytes it lost, after which
/// any two other nodes may fail.
#[tokio::test(flavor = "multi_thread")]
async fn the_scrubber_finds_bitrot_nobody_reads_and_the_node_is_healed() {
    let mut cluster = TestCluster::start();
    let s3 = cluster.client();
    let objects = write_sizes(&s3).await;
    let node = "z1-n1";
    let dir = cluster.path().join(node);
    let mut files: Vec<_> = cluster
        .fragment_files()
        .into_iter()
        .filter(|f| f.starts_with(&dir))
        .collect();
    files.sort();
    assert_eq!(files.len(), 4, "the four objects above the inline size");
    let originals: Vec<_> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    let mut rotten = originals[0].clone();
    let middle = rotten.len() / 2;
    rotten[middle] ^= 0x5A;
    std::fs::write(&files[0], rotten).unwrap();
    std::fs::write(&files[1], &originals[1][..originals[1].len() / 3]).unwrap();
    std::fs::remove_file(&files[2]).unwrap();
    cluster.restart_with(node, "scrub_interval_secs", Some(toml::Value::Integer(1)));

    let restored = || {
        files
            .iter()
            .zip(&originals)
            .all(|(f, original)| std::fs::read(f).is_ok_and(|b| b == *original))
    };
    common::wait_until(restored, "damaged fragment files rebuilt by a heal").await;
    // The node sees the three files back in their places and counts them repaired.
    let scrub = || async {
        let status = common::node_status(&s3).await;
        status.iter().find(|n| n["id"] == node).unwrap()["scrub"].clone()
    };
    for _ in 0..50 {
        if scrub().await["repaired"] == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let scrub = scrub().await;
    assert_eq!(scrub["corrupt"], 2, "{scrub}");
    assert!(scrub["missing"].as_u64().unwrap() >= 1, "{scrub}");
    assert_eq!(scrub["repaired"], 3, "{scrub}");
    assert_eq!(scrub["awaiting_repair"], 0, "{scrub}");
    let aside = std::fs::read_dir(dir.join("fragments").join("corrupt")).unwrap();
    assert_eq!(
        aside.count(),
        2,
        "corrupt files are kept aside, not deleted at once"
    );

    cluster.kill("z2-n1");
    cluster.kill("z3-n1");
    for (key, data) in &objects {
        let got = s3.get(key).await;
        assert_eq!(got.status, 200, "{key}: {}", got.text());
        assert!(got.body[..] == data[..], "{key}");
    }
}

/// Large fragments go to a node alone on a connection of their own, read straight into the
/// node's direct-I/O buffer (`RAW_FRAGMENT_PROTOCOL`). The node still checks every frame: a
/// corrupted or abandoned upload is refused and leaves no file behind, and a whole one reads
/// back as sent.
#[tokio::test(flavor = "multi_thread")]
async fn raw_fragment_uploads_keep_only_whole_checked_fragments() {
    use node_rpc::body::{full, ChannelBody};
    use node_rpc::client::{FragmentBody, RpcError};
    use tokio::io::AsyncReadExt;

    let cluster = TestCluster::start();
    let (node, _) = cluster.nodes().remove(0);
    let (addr, secret, client) = first_node_client(&cluster);

    // Fragment 1 of a 32 MiB 4+2 object: 32 frames of 256 KiB and their hashes, past the 1 MiB
    // from which uploads go raw.
    let layout = erasure::StripeLayout {
        size: 32 << 20,
        data_shards: 4,
        block_size: 256 << 10,
        frames: erasure::FrameFormat::NEWEST,
    };
    let object = random_bytes(layout.size as usize, 77);
    let mut frames = Vec::new();
    let mut encoder = erasure::Codec::new(4, 2).unwrap().encoder(layout);
    encoder
        .push(&object, &mut |_, stripe| frames.push(stripe[1].clone()))
        .unwrap();
    let fragment: Vec<u8> = frames.concat();
    assert_eq!(fragment.len() as u64, layout.fragment_len());
    let tmp = cluster.path().join(&node).join("fragments").join("tmp");
    let leftovers = || std::fs::read_dir(&tmp).map_or(0, |d| d.count());

    // Found in the node's first 1 MiB: the answer still arrives once the sender has sent the
    // other 7 MiB.
    let mut corrupt = fragment.clone();
    corrupt[3 * ((256 << 10) + 32) + 1000] ^= 1;
    let id = node_rpc::record::fragment_id(&[b"corrupt"]);
    match client
        .put_fragment(&addr, &id, 1, layout, full(corrupt))
        .await
    {
        Err(RpcError::Status(status, message)) => {
            assert_eq!(status, 400, "{message}");
            assert!(message.contains("stripe 3"), "{message}");
        }
        other => panic!("a corrupted raw upload was not refused: {other:?}"),
    }
    assert_eq!(leftovers(), 0, "a refused upload leaves no temporary file");

    // The sender gives up after three frames, with an error or by just ending its body (a
    // repair whose sources failed): the connection drops mid-fragment either way, and the
    // sender learns at once instead of waiting for an answer to bytes it never sent.
    for with_error in [true, false] {
        let id = node_rpc::record::fragment_id(&[b"abandoned", &[with_error as u8]]);
        let (tx, body) = ChannelBody::new(8, None);
        let feed = frames.clone();
        tokio::spawn(async move {
            for frame in feed.into_iter().take(3) {
                tx.send(Ok(frame)).await.unwrap();
            }
            if with_error {
                let gone = std::io::Error::other("client went away");
                tx.send(Err(gone)).await.unwrap();
            }
        });
        let upload = client.put_fragment(&addr, &id, 1, layout, body.boxed());
        let outcome = tokio::time::timeout(std::time::Duration::from_secs(5), upload)
            .await
            .expect("a short raw upload fails at once");
        assert!(outcome.is_err(), "with error: {with_error}");
        common::wait_until(|| leftovers() == 0, "the abandoned upload's file removed").await;
        let missing = client
            .get_fragment(&addr, &id, 1, 0, layout.fragment_len())
            .await;
        assert!(
            matches!(&missing, Err(e) if e.is_not_found()),
            "nothing of an abandoned upload is kept (with error: {with_error})"
        );
    }

    let id = node_rpc::record::fragment_id(&[b"whole"]);
    client
        .put_fragment(&addr, &id, 1, layout, full(fragment.clone()))
        .await
        .unwrap();
    // A raw read leaves its connection serving calls again, and the client keeps it for the
    // next raw read: three reads take turns on one connection, and the node closes none.
    let closed = closed_with(&addr);
    let whole = layout.fragment_len();
    for (offset, len) in [(0, whole), (1 << 20, 3 << 20), (0, whole)] {
        let mut read = Vec::new();
        match client
            .get_fragment(&addr, &id, 1, offset, len)
            .await
            .unwrap()
        {
            FragmentBody::Raw(mut io) => {
                io.read_to_end(&mut read).await.unwrap();
            }
            FragmentBody::Http { .. } => {
                panic!("a read of 1 MiB or more has a connection of its own")
            }
        }
        let asked = &fragment[offset as usize..(offset + len) as usize];
        assert!(read == asked, "bytes {offset}+{len} read back as sent");
    }
    assert_eq!(
        closed_with(&addr),
        closed,
        "every raw read kept its connection"
    );
    let metrics = common::scrape(&addr, &secret.metrics_token()).await;
    let resumed = (metrics.lines()).find(|l| l.starts_with("tessera_raw_reads_resumed_total{"));
    assert!(resumed.is_some_and(|l| l.ends_with(" 3")), "{resumed:?}");
    assert_eq!(leftovers(), 0);
}

/// A GET of a whole object of 1 MiB asks its data holders for their fragments with the record,
/// and each sends its fragment (256 KiB) raw: the reads come back whole, and every node keeps
/// serving calls on those connections, which the gateway takes again for the next GET.
#[tokio::test(flavor = "multi_thread")]
async fn whole_object_reads_take_their_fragments_raw_on_kept_connections() {
    let cluster = TestCluster::start();
    let s3 = cluster.client();
    assert_eq!(s3.put("/raw", Bytes::new()).await.status, 200);
    let body = random_bytes(1 << 20, 31);
    assert_eq!(s3.put("/raw/object", body.clone()).await.status, 200);
    let nodes: Vec<(String, String)> = (cluster.nodes().into_iter())
        .map(|(node, _)| cluster.node_addr(&node))
        .collect();
    let resumed = || async {
        let mut sum = 0;
        for (addr, secret) in &nodes {
            let token = node_rpc::auth::ClusterSecret::new(secret.clone()).metrics_token();
            let metrics = common::scrape(addr, &token).await;
            let line =
                (metrics.lines()).find(|l| l.starts_with("tessera_raw_reads_resumed_total{"));
            sum += line
                .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                .unwrap();
        }
        sum
    };
    let get = || async {
        let got = s3.get("/raw/object").await;
        assert_eq!(got.status, 200);
        assert!(got.body[..] == body[..], "the object reads back as written");
    };
    // The first lookups in a new bucket expect small objects, whose fragments are inline.
    get().await;
    get().await;
    let (before, closed) = (resumed().await, nodes.iter().map(|(a, _)| closed_with(a)));
    let closed: Vec<usize> = closed.collect();
    for _ in 0..5 {
        get().await;
    }
    for ((addr, _), closed) in nodes.iter().zip(closed) {
        assert_eq!(
            closed_with(addr),
            closed,
            "no connection to {addr} was closed"
        );
    }
    let raw = resumed().await - before;
    assert!(raw >= 20, "four fragments a GET went raw: {raw} in 5 GETs");
}

/// Connections to the node at `addr` that were closed and linger in TIME_WAIT, on whichever side
/// closed first: a raw read's, when the node closed it after the range or the client did not
/// keep it.
fn closed_with(addr: &str) -> usize {
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    let port = format!(":{port:04X}");
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .filter(|f| (f[1].ends_with(&port) || f[2].ends_with(&port)) && f[3] == "06")
        .count()
}

/// A record as a holder commits it: an empty object's, at `version`.
fn empty_object(
    key: &str,
    version: node_rpc::record::Version,
) -> node_rpc::protocol::CommitRequest {
    let mut record = node_rpc::record::ObjectRecord::tombstone(version, false);
    record.deleted = false;
    record.etag = "d41d8cd98f00b204e9800998ecf8427e".into();
    node_rpc::protocol::CommitRequest {
        bucket: [0x24; 16],
        key: key.into(),
        record,
        upload_id: None,
        claim: None,
        replicate: None,
    }
}

/// The address of the cluster's first node, the cluster secret, and a client of the node protocol.
fn first_node_client(
    cluster: &TestCluster,
) -> (String, node_rpc::auth::ClusterSecret, node_rpc::NodeClient) {
    let (addr, secret) = cluster.first_node();
    let secret = node_rpc::auth::ClusterSecret::new(secret);
    let client = node_rpc::NodeClient::new(secret.clone(), std::time::Duration::from_secs(10));
    (addr, secret, client)
}

/// Asserts that the node at `addr` answered calls labelled `call` (a kind of batch) with 200, as
/// its metrics count them.
async fn assert_batches_answered(addr: &str, secret: &node_rpc::auth::ClusterSecret, call: &str) {
    let metrics = common::scrape(addr, &secret.metrics_token()).await;
    let label = format!("call=\"{call}\"");
    let batches = metrics
        .lines()
        .find(|l| l.starts_with("tessera_node_calls_total{") && l.contains(&label))
        .unwrap_or_else(|| panic!("no {call} was counted:\n{metrics}"));
    assert!(batches.contains("status=\"200\""), "{batches}");
}

/// Many concurrent commits to one node go out gathered into batches (`POST /v1/commits`), and
/// each is still answered by itself as a lone call would be: applied, or `false` for a version
/// older than the one the node has. Every applied record is listed once.
#[tokio::test(flavor = "multi_thread")]
async fn gathered_commits_are_each_applied_and_answered() {
    use node_rpc::record::Version;
    let cluster = TestCluster::start();
    let (addr, secret, client) = first_node_client(&cluster);
    let older = Version::now();
    let newer = Version::now();
    assert!(older < newer);
    assert!(client
        .commit(&addr, &empty_object("stale", newer))
        .await
        .unwrap());

    let mut commits: Vec<_> = (0..400)
        .map(|i| empty_object(&format!("key-{i:03}"), Version::now()))
        .collect();
    commits.insert(200, empty_object("stale", older));
    let answers = futures::future::join_all(commits.iter().map(|c| client.commit(&addr, c))).await;
    for (commit, answer) in commits.iter().zip(&answers) {
        let applied = *answer
            .as_ref()
            .unwrap_or_else(|e| panic!("{}: {e}", commit.key));
        assert_eq!(applied, commit.key != "stale", "{}", commit.key);
    }

    let keys = common::listed_keys(&client, &addr, [0x24; 16]).await;
    let mut expected: Vec<String> = (0..400).map(|i| format!("key-{i:03}")).collect();
    expected.push("stale".into());
    assert_eq!(keys, expected);

    assert_batches_answered(&addr, &secret, "commit_batch").await;
}

/// Many concurrent lookups at one node go out gathered into batches (`POST /v1/objects`), and
/// each is answered as a lone `GET /v1/object` would be: the key's current record, the version
/// asked for, or no record for a key or version the node does not have (here an older version is
/// replaced by a newer one, as in a bucket without versioning).
#[tokio::test(flavor = "multi_thread")]
async fn gathered_lookups_are_each_answered() {
    use node_rpc::record::{Version, VersionRef};
    let cluster = TestCluster::start();
    let (addr, secret, client) = first_node_client(&cluster);
    let mut versions = Vec::new();
    for i in 0..100 {
        let version = Version::now();
        let commit = empty_object(&format!("key-{i:03}"), version);
        assert!(client.commit(&addr, &commit).await.unwrap());
        versions.push(version);
    }
    let older = versions[0];
    versions[0] = Version::now();
    assert!(client
        .commit(&addr, &empty_object("key-000", versions[0]))
        .await
        .unwrap());

    // Current records, missing keys, versions by id that are and are not there, all at once.
    let asks: Vec<(String, Option<VersionRef>)> = (0..400)
        .map(|i| match i % 4 {
            0 | 1 => (format!("key-{:03}", i % 100), None),
            2 => (format!("missing-{i}"), None),
            // Records written without versioning are the key's null version.
            _ if i == 3 => ("key-001".to_string(), Some(VersionRef::Null)),
            _ if i == 7 => ("key-000".to_string(), Some(VersionRef::Id(older))),
            _ => ("key-002".to_string(), Some(VersionRef::Id(Version::now()))),
        })
        .collect();
    let answers = futures::future::join_all(
        asks.iter()
            .map(|(key, which)| client.object(&addr, &[0x24; 16], key, *which)),
    )
    .await;
    for ((key, which), answer) in asks.iter().zip(answers) {
        let lookup = answer.unwrap_or_else(|e| panic!("{key}: {e}"));
        let found = lookup.record.map(|r| r.version);
        let expected = match (key.as_str(), which) {
            (k, _) if k.starts_with("missing") => None,
            ("key-001", Some(_)) => Some(versions[1]),
            (_, Some(_)) => None,
            (k, None) => Some(versions[k[4..].parse::<usize>().unwrap()]),
        };
        assert_eq!(found, expected, "{key} {which:?}");
    }

    assert_batches_answered(&addr, &secret, "lookup_batch").await;
}
