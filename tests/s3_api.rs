//! The S3 API against a cluster of real processes: buckets, objects, ranges, listings,
//! authentication, digests and aws-chunked uploads.

mod common;

use base64::{engine::general_purpose::STANDARD, Engine};
use bytes::Bytes;
use common::{
    md5_hex, random_bytes, xml_value, BodySigning, Reply, S3Client, TestCluster, ACCESS_KEY,
    SECRET_KEY,
};
use md5::Digest;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn buckets_are_created_listed_and_deleted() {
    let cluster = TestCluster::start();
    let s3 = cluster.client();
    assert_eq!(s3.put("/alpha", Bytes::new()).await.status, 200);
    let again = s3.put("/alpha", Bytes::new()).await;
    assert_eq!(
        (again.status, again.code().as_str()),
        (409, "BucketAlreadyOwnedByYou")
    );
    assert_eq!(
        s3.put("/Bad_Name", Bytes::new()).await.code(),
        "InvalidBucketName"
    );
    assert!(s3.get("/").await.text().contains("<Name>alpha</Name>"));
    assert_eq!(s3.head("/alpha").await.status, 200);
    assert_eq!(s3.put("/alpha/k", "v").await.status, 200);
    let busy = s3.delete("/alpha").await;
    assert_eq!((busy.status, busy.code().as_str()), (409, "BucketNotEmpty"));
    assert_eq!(s3.delete("/alpha/k").await.status, 204);
    assert_eq!(s3.delete("/alpha").await.status, 204);
    assert_eq!(s3.head("/alpha").await.status, 404);
    let missing = s3.get("/alpha/k").await;
    assert_eq!(
        (missing.status, missing.code().as_str()),
        (404, "NoSuchBucket")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn objects_round_trip_at_every_size_boundary() {
    let cluster = TestCluster::start();
    let s3 = cluster.client();
    s3.put("/b-bucket", Bytes::new()).await;
    // Inline limit 64 KiB, stripes of 4 x 256 KiB.
    let sizes = [
        0,
        1,
        3,
        4096,
        65536,
        65537,
        1 << 20,
        (1 << 20) + 1,
        3 * (1 << 20) + 12345,
    ];
    for (i, size) in sizes.into_iter().enumerate() {
        let data = random_bytes(size, i as u64);
        let key = format!("/b-bucket/obj-{size}");
        let put = s3.put(&key, data.clone()).await;
        assert_eq!(put.status, 200, "{}", put.text());
        assert_eq!(
            put.header("etag"),
            Some(format!("\"{}\"", md5_hex(&data)).as_str())
        );
        let got = s3.get(&key).await;
        assert_eq!(got.status, 200);
        assert!(got.body == data, "size {size} reads back identical");
        let head = s3.head(&key).await;
        assert_eq!(
            head.header("content-length"),
            Some(size.to_string().as_str())
        );
    }
    assert_eq!(s3.get("/b-bucket/nope").await.code(), "NoSuchKey");
}

#[tokio::test(flavor = "multi_thread")]
async fn byte_ranges_match_slices() {
    let cluster = TestCluster::start();
    let s3 = cluster.client();
    s3.put("/r-bucket", Bytes::new()).await;
    let data = random_bytes(2 * (1 << 20) + 777, 9);
    s3.put("/r-bucket/big", data.clone()).await;
    let len = data.len();
    let cases = [
        ("bytes=0-0", 0, 0),
        ("bytes=100-200", 100, 200),
        ("bytes=1048575-1048577", 1048575, 1048577),
        ("bytes=-100", len - 100, len - 1),
        ("bytes=2000000-", 2000000, len - 1),
        ("bytes=5-99999999", 5, len - 1),
    ];
    for (range, start, end) in cases {
        let got = s3
            .send("GET", "/r-bucket/big", &[("range", range)], Bytes::new())
            .await;
        assert_eq!(got.status, 206, "{range}");
        assert!(got.body[..] == data[start..=end], "{range}");
        assert_eq!(
            got.header("content-range"),
            Some(format!("bytes {start}-{end}/{len}").as_str())
        );
    }
    let bad = s3
        .send(
            "GET",
            "/r-bucket/big",
            &[("range", "bytes=99999999-")],
            Bytes::new(),
        )
        .await;
    assert_eq!((bad.status, bad.code().as_str()), (416, "InvalidRange"));
}

#[tokio::test(flavor = "multi_thread")]
async fn listings_page_and_roll_up_prefixes() {
    let cluster = TestCluster::start();
    let s3 = cluster.client();
    s3.put("/l-bucket", Bytes::new()).await;
    let mut keys: Vec<String> = (0..25)
        .map(|i| format!("dir{}/file{i:02}", i % 3))
        .collect();
    keys.extend(["top1", "top2", "odd key+plus"].map(String::from));
    for key in &keys {
        let path = format!("/l-bucket/{}", key.replace(' ', "%20").replace('+', "%2B"));
        assert_eq!(s3.put(&path, key.clone()).await.status, 200);
    }
    keys.sort();
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut path = "/l-bucket?list-type=2&max-keys=7".to_string();
        if let Some(t) = &token {
            path.push_str(&format!("&continuation-token={t}"));
        }
        let page = s3.get(&path).await.text();
        for part in page.split("<Key>").skip(1) {
            seen.push(part.split("</Key>").next().unwrap().to_string());
        }
        match page.split("<NextContinuationToken>").nth(1) {
            Some(rest) => token = Some(rest.split('<').next().unwrap().to_string()),
            None => break,
        }
    }
    assert_eq!(seen, keys);
    let rolled = s3.get("/l-bucket?list-type=2&delimiter=%2F").await.text();
    for prefix in ["dir0/", "dir1/", "dir2/"] {
        assert!(
            rolled.contains(&format!("<Prefix>{prefix}</Prefix>")),
            "{rolled}"
        );
    }
    assert!(rolled.contains("<Key>top1</Key>") && !rolled.contains("file00"));
    let scoped = s3.get("/l-bucket?list-type=2&prefix=dir1%2F").await.text();
    assert_eq!(scoped.matches("<Key>").count(), 8);
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_without_a_valid_signature_are_refused() {
    let cluster = TestCluster::start();
    let s3 = cluster.client();
    s3.put("/auth", Bytes::new()).await;
    let anonymous = s3.raw("GET", "/auth/x", &[], Bytes::new()).await;
    assert_eq!(
        (anonymous.status, anonymous.code().as_str()),
        (403, "AccessDenied")
    );
    let wrong_secret = common::S3Client::new(&cluster.endpoint, common::ACCESS_KEY, "nope");
    // Refused before its body is read: a client still sending a large body must get the error,
    // not a reset connection.
    for body in [Bytes::from("data"), Bytes::from(vec![7u8; 32 << 20])] {
        let denied = wrong_secret.put("/auth/x", body).await;
        assert_eq!(
            (denied.status, denied.code().as_str()),
            (403, "SignatureDoesNotMatch")
        );
    }
    let unknown = common::S3Client::new(&cluster.endpoint, "WHO", common::SECRET_KEY);
    assert_eq!(unknown.get("/auth/x").await.code(), "InvalidAccessKeyId");
    // A body that does not match its signed SHA-256 is refused and not stored.
    let (headers, _) = s3.sign("PUT", "/auth/x", &[], b"signed body", BodySigning::Hashed);
    let headers: Vec<_> = headers.into_iter().filter(|(k, _)| k != "host").collect();
    let tampered = s3
        .raw("PUT", "/auth/x", &headers, Bytes::from("other body!"))
        .await;
    assert_eq!(tampered.code(), "XAmzContentSHA256Mismatch");
    assert_eq!(s3.head("/auth/x").await.status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_digests_are_bad_digest_and_store_nothing() {
    let cluster = TestCluster::start();
    let s3 = cluster.client();
    s3.put("/d-bucket", Bytes::new()).await;
    for size in [10, 300_000] {
        let data = Bytes::from(random_bytes(size, 1));
        let wrong_md5 = STANDARD.encode([0u8; 16]);
        let r = s3
            .send(
                "PUT",
                "/d-bucket/md5",
                &[("content-md5", &wrong_md5)],
                data.clone(),
            )
            .await;
        assert_eq!((r.status, r.code().as_str()), (400, "BadDigest"));
        let r = s3
            .send(
                "PUT",
                "/d-bucket/crc",
                &[("x-amz-checksum-crc32", "AAAAAA==")],
                data.clone(),
            )
            .await;
        assert_eq!((r.status, r.code().as_str()), (400, "BadDigest"));
        assert_eq!(s3.head("/d-bucket/md5").await.status, 404);
        assert_eq!(s3.head("/d-bucket/crc").await.status, 404);
        let right_md5 = STANDARD.encode(md5::Md5::digest(&data));
        let r = s3
            .send(
                "PUT",
                "/d-bucket/ok",
                &[("content-md5", &right_md5)],
                data.clone(),
            )
            .await;
        assert_eq!(r.status, 200);
    }
    // Nothing was left behind by the refused uploads: only the one good large object has files.
    assert_eq!(cluster.fragment_files().len(), 6);
}

/// `aws-chunked` with per-chunk signatures, as the Java and Go SDKs send over http.
#[tokio::test(flavor = "multi_thread")]
async fn signed_aws_chunked_uploads_are_decoded_and_verified() {
    let cluster = TestCluster::start();
    let s3 = cluster.client();
    s3.put("/c-bucket", Bytes::new()).await;
    let data = random_bytes(200_000, 5);
    for tamper in [true, false] {
        let len = data.len().to_string();
        let headers = [
            ("content-encoding", "aws-chunked"),
            ("x-amz-decoded-content-length", len.as_str()),
        ];
        let (mut all, seed) = s3.sign(
            "PUT",
            "/c-bucket/signed",
            &headers,
            b"",
            BodySigning::Literal("STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
        );
        all.retain(|(k, _)| k != "host");
        let amz_date = all
            .iter()
            .find(|(k, _)| k == "x-amz-date")
            .unwrap()
            .1
            .clone();
        let mut body = chunk_stream(&data, 65536, &seed, &amz_date);
        if tamper {
            let i = body.len() / 2;
            body[i] ^= 1;
        }
        let r = s3
            .raw("PUT", "/c-bucket/signed", &all, Bytes::from(body))
            .await;
        if tamper {
            assert_eq!(r.code(), "SignatureDoesNotMatch");
            assert_eq!(s3.head("/c-bucket/signed").await.status, 404);
        } else {
            assert_eq!(r.status, 200, "{}", r.text());
            assert!(s3.get("/c-bucket/signed").await.body == data);
        }
    }
}

fn chunk_stream(data: &[u8], chunk: usize, seed: &str, amz_date: &str) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let key = common::signing_key(common::SECRET_KEY, &amz_date[..8]);
    let scope = format!("{}/{}/s3/aws4_request", &amz_date[..8], common::REGION);
    let empty = hex::encode(Sha256::digest(b""));
    let mut previous = seed.to_string();
    let mut out = Vec::new();
    for piece in data.chunks(chunk).chain(std::iter::once(&[][..])) {
        let to_sign = format!(
            "AWS4-HMAC-SHA256-PAYLOAD\n{amz_date}\n{scope}\n{previous}\n{empty}\n{}",
            hex::encode(Sha256::digest(piece))
        );
        previous = hex::encode(common::hmac(&key, to_sign.as_bytes()));
        out.extend_from_slice(
            format!("{:x};chunk-signature={previous}\r\n", piece.len()).as_bytes(),
        );
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// `aws-chunked` without signatures but with a CRC32 trailer, as botocore sends over https.
#[tokio::test(flavor = "multi_thread")]
async fn unsigned_chunked_uploads_check_their_trailing_checksum() {
    let cluster = TestCluster::start();
    let s3 = cluster.client();
    s3.put("/t-bucket", Bytes::new()).await;
    let data = random_bytes(150_000, 6);
    let crc = STANDARD.encode(crc32fast::hash(&data).to_be_bytes());
    for (value, expect) in [(crc.as_str(), 200), ("AAAAAA==", 400)] {
        let mut body = Vec::new();
        for piece in data.chunks(65536) {
            body.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            body.extend_from_slice(piece);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("0\r\nx-amz-checksum-crc32:{value}\r\n\r\n").as_bytes());
        let len = data.len().to_string();
        let r = s3
            .send_signed(
                "PUT",
                "/t-bucket/trailer",
                &[
                    ("content-encoding", "aws-chunked"),
                    ("x-amz-decoded-content-length", &len),
                    ("x-amz-trailer", "x-amz-checksum-crc32"),
                    ("x-amz-sdk-checksum-algorithm", "CRC32"),
                ],
                Bytes::from(body),
                BodySigning::Literal("STREAMING-UNSIGNED-PAYLOAD-TRAILER"),
            )
            .await;
        assert_eq!(r.status, expect, "{}", r.text());
        if expect == 200 {
            assert_eq!(r.header("x-amz-checksum-crc32"), Some(crc.as_str()));
            assert!(s3.get("/t-bucket/trailer").await.body == data);
        } else {
            assert_eq!(r.code(), "BadDigest");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn small_objects_live_in_metadata_not_files() {
    let mut cluster = TestCluster::start();
    let s3 = cluster.client();
    s3.put("/s-bucket", Bytes::new()).await;
    for i in 0..20 {
        assert_eq!(
            s3.put(&format!("/s-bucket/k{i}"), random_bytes(4096, i))
                .await
                .status,
            200
        );
    }
    assert!(
        cluster.fragment_files().is_empty(),
        "4 KiB objects made fragment files"
    );
    s3.put("/s-bucket/large", random_bytes(65537, 1)).await;
    assert_eq!(
        cluster.fragment_files().len(),
        6,
        "one fragment file per holder"
    );
    // Overwriting the large object with a small one keeps its files for a while, so that an
    // overwrite which never reaches enough holders can be undone; then they go.
    s3.put("/s-bucket/large", random_bytes(10, 2)).await;
    assert_eq!(cluster.fragment_files().len(), 6, "kept");
    let keep = Some(toml::Value::Integer(1));
    for (node, _) in cluster.nodes() {
        cluster.restart_with(&node, "keep_replaced_secs", keep.clone());
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !cluster.fragment_files().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "replaced files expire"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(s3.get("/s-bucket/large").await.body.len(), 10);
}

#[tokio::test(flavor = "multi_thread")]
async fn multipart_uploads_assemble_parts_in_order() {
    let mut cluster = TestCluster::start();
    let s3 = cluster.client();
    s3.put("/m-bucket", Bytes::new()).await;
    let created = s3
        .send("POST", "/m-bucket/big?uploads", &[], Bytes::new())
        .await
        .text();
    let upload = created
        .split("<UploadId>")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .to_string();
    let parts = [
        random_bytes(5 << 20, 1),
        random_bytes(5 << 20, 2),
        random_bytes(1000, 3),
    ];
    let mut xml = String::from("<CompleteMultipartUpload>");
    for (i, part) in parts.iter().enumerate() {
        let r = s3
            .put(
                &format!("/m-bucket/big?partNumber={}&uploadId={upload}", i + 1),
                part.clone(),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        xml.push_str(&format!(
            "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>",
            i + 1,
            r.header("etag").unwrap()
        ));
    }
    xml.push_str("</CompleteMultipartUpload>");
    let bad_order = xml.replacen("<PartNumber>1<", "<PartNumber>9<", 1);
    let r = s3
        .send(
            "POST",
            &format!("/m-bucket/big?uploadId={upload}"),
            &[],
            bad_order.into(),
        )
        .await;
    assert_eq!(r.code(), "InvalidPartOrder");
    let path = format!("/m-bucket/big?uploadId={upload}");
    async fn complete(s3: &S3Client, path: &str, xml: &str) -> Reply {
        s3.send("POST", path, &[], Bytes::from(xml.to_string()))
            .await
    }
    let r = complete(&s3, &path, &xml).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let whole: Vec<u8> = parts.concat();
    let got = s3.get("/m-bucket/big").await;
    assert!(got.body == whole);
    let mut md5s = Vec::new();
    for part in &parts {
        md5s.extend(hex::decode(md5_hex(part)).unwrap());
    }
    assert_eq!(
        got.header("etag"),
        Some(format!("\"{}-3\"", md5_hex(&md5s)).as_str())
    );
    let span = s3
        .send(
            "GET",
            "/m-bucket/big",
            &[("range", "bytes=5242870-5242890")],
            Bytes::new(),
        )
        .await;
    assert!(
        span.body[..] == whole[5242870..=5242890],
        "a range across a part boundary"
    );
    let second = s3.get("/m-bucket/big?partNumber=2").await;
    assert!(second.body[..] == parts[1][..]);
    assert_eq!(second.header("x-amz-mp-parts-count"), Some("3"));
    // A repeated Complete (its response lost) gets the same answer, through any gateway; one
    // that lists other parts does not.
    let other = S3Client::new(&cluster.second_gateway(), ACCESS_KEY, SECRET_KEY);
    let again = complete(&other, &path, &xml).await;
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(xml_value(&again, "ETag"), xml_value(&r, "ETag"));
    let fewer = xml.replacen("<Part><PartNumber>3<", "<Part><PartNumber>4<", 1);
    assert_eq!(complete(&other, &path, &fewer).await.code(), "InvalidPart");
    s3.put("/m-bucket/big", Bytes::from("newer")).await;
    assert_eq!(complete(&s3, &path, &xml).await.code(), "NoSuchUpload");
}

/// A bucket made through one gateway can be written through another at once, although that
/// one caches the bucket table for 2 s: a name its copy lacks is looked up on the nodes.
#[tokio::test(flavor = "multi_thread")]
async fn a_bucket_made_through_one_gateway_is_usable_through_another_at_once() {
    let mut cluster = TestCluster::start();
    let s3 = cluster.client();
    let other = S3Client::new(&cluster.second_gateway(), ACCESS_KEY, SECRET_KEY);
    assert_eq!(s3.put("/warm", Bytes::new()).await.status, 200);
    for i in 0..3 {
        // The other gateway reads the table now, before the bucket exists.
        assert_eq!(other.head("/warm").await.status, 200);
        assert_eq!(other.head(&format!("/fresh{i}")).await.status, 404);
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(
            s3.put(&format!("/fresh{i}"), Bytes::new()).await.status,
            200
        );
        let put = other.put(&format!("/fresh{i}/k"), Bytes::from("v")).await;
        assert_eq!(put.status, 200, "{}", put.text());
        assert_eq!(other.get(&format!("/fresh{i}/k")).await.body[..], b"v"[..]);
    }
}

/// GETs racing overwrites of the same key each return one whole version: an overwrite that
/// removes the fragments a read has just found makes the read look again, not break off.
#[tokio::test(flavor = "multi_thread")]
async fn reads_racing_overwrites_return_whole_versions() {
    let cluster = TestCluster::start();
    let s3 = cluster.client();
    s3.put("/race", Bytes::new()).await;
    let versions: Vec<Vec<u8>> = (0..4).map(|i| random_bytes(1_300_000, 50 + i)).collect();
    assert_eq!(s3.put("/race/k", versions[0].clone()).await.status, 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(4);
    let writer = {
        let (s3, versions) = (cluster.client(), versions.clone());
        tokio::spawn(async move {
            let mut written = 0;
            while std::time::Instant::now() < deadline {
                let data = versions[written % versions.len()].clone();
                assert_eq!(s3.put("/race/k", data).await.status, 200);
                written += 1;
            }
            written
        })
    };
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (s3, versions) = (cluster.client(), versions.clone());
            tokio::spawn(async move {
                let mut reads = 0;
                while std::time::Instant::now() < deadline {
                    let got = s3.get("/race/k").await;
                    assert_eq!(got.status, 200, "{}", got.text());
                    assert!(versions.iter().any(|v| v[..] == got.body[..]));
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    let written = writer.await.unwrap();
    let mut reads = 0;
    for reader in readers {
        reads += reader.await.unwrap();
    }
    eprintln!("OVERWRITE RACE: {written} overwrites, {reads} whole reads");
    assert!(written > 10 && reads > 10);
}
