//! A peer region as this region's replication reaches it: its S3 endpoint, signed with this
//! region's replication key, and the requests that send it one version as a replica (which its
//! `api::replica` applies): the object's bytes streamed from k fragments into a PUT, a DELETE for
//! a delete marker or tombstone, a DELETE with `versionId` for a purge. Used by the drain of the
//! outboxes (`background::replication`), by resync (`background::resync`), and by the reads that
//! fall back to a peer (`api::fallback`).

use crate::ops::cluster::Cluster;
use crate::ops::encryption::{Sse, WrappingKey};
use crate::ops::error::OpError;
use crate::ops::lookup::{find_version, Found};
use crate::ops::read;
use crate::ops::replica::{REVISION_HEADER, VERSIONED_HEADER, VERSION_HEADER, VERSION_OF_HEADER};
use crate::s3::error::S3Error;
use crate::s3::object_lock::lock_headers;
use base64::Engine as _;
use http_body_util::BodyExt;
use node_rpc::cluster::RegionConfig;
use node_rpc::object_lock::now_millis;
use node_rpc::record::{BucketRecord, Encryption, KeyRecord, ListEntry, ObjectRecord, VersionRef};
use s3_client::{object_path, query_value, Client, ClientConfig};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

/// How long a request to a peer may take: this, plus a second per `MIN_RATE` bytes it carries.
/// A peer that stops answering (a partition that drops packets) must not hold a drain forever.
const BASE_TIMEOUT: Duration = Duration::from_secs(30);
const MIN_RATE: u64 = 1 << 20;
/// How long a read that falls back to a peer waits for the head of its answer.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a version was not sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The peer did not answer, or answered that it cannot take writes now (5xx): the link is
    /// down or the peer is in trouble, and the version waits.
    #[error("{0}")]
    Unreachable(String),
    /// The peer refused the version (4xx: a bucket it lacks, a lock, a bad request): it stays
    /// queued, shown as `FAILED`, until the peer takes it.
    #[error("{0}")]
    Refused(String),
    /// This region could not read the version to send it.
    #[error("{0}")]
    Local(String),
}

impl From<OpError> for SendError {
    fn from(e: OpError) -> SendError {
        SendError::Local(format!("{e:?}"))
    }
}

/// A peer region's endpoint, as this region's replication key.
pub struct Peer {
    pub name: String,
    client: Client,
    /// SSE-S3's master key: an object encrypted with it is read with it and sent to be
    /// encrypted with the peer's own.
    master_key: Option<WrappingKey>,
}

impl Peer {
    /// The peer region `name` of `region`.
    pub fn connect(
        region: &RegionConfig,
        name: &str,
        master_key: Option<WrappingKey>,
    ) -> Result<Peer, OpError> {
        let peer = (region.peers.iter())
            .find(|p| p.name == name)
            .ok_or_else(|| S3Error::InvalidArgument(format!("no peer region {name}")))?;
        let client = Client::new(ClientConfig {
            endpoint: peer.endpoint.clone(),
            access_key: RegionConfig::replication_key_id(&region.name),
            secret_key: region.replication_secret_key(),
            region: peer.name.clone(),
            ca_file: peer.ca_file.clone(),
            insecure: false,
        })
        .map_err(|e| S3Error::InvalidRequest(format!("peer region {name}: {e:#}")))?;
        Ok(Peer {
            name: name.to_string(),
            client,
            master_key,
        })
    }

    /// Whether the peer lacks the version: it does not have it, or (a null version, which it may
    /// hold another version of) holds an older one. A key's tombstone is lacking only where the
    /// peer still has an older object to delete.
    pub async fn lacks(&self, bucket: &BucketRecord, entry: &ListEntry) -> Result<bool, SendError> {
        let id = match bucket.versioning {
            Some(_) => entry.version_ref(),
            None => VersionRef::Null,
        };
        let path = format!("{}?versionId={id}", object_path(&bucket.name, &entry.key));
        let reply = self.request("HEAD", &path, &[], None, 0).await?;
        match reply.status {
            404 => Ok(entry.versioned || !entry.deleted),
            200 | 405 if entry.versioned => Ok(false),
            200 | 405 => Ok(reply
                .header(VERSION_OF_HEADER)
                .and_then(|v| v.parse().ok())
                .is_none_or(|theirs: node_rpc::record::Version| theirs < entry.version)),
            status => Err(refusal("a HEAD", status, &reply)),
        }
    }

    /// Sends one version as a replica; the bytes sent. The version is read from `records`, its
    /// holders' records with their addresses, when k of them have it (`Found::from_records`),
    /// and looked up otherwise. A version that is gone here (purged, or a null version
    /// overwritten since it was listed or queued) is not sent: what replaced it is sent in its
    /// own turn.
    pub async fn send(
        &self,
        cluster: &Arc<Cluster>,
        bucket: &BucketRecord,
        entry: &ListEntry,
        records: Vec<(String, ObjectRecord)>,
    ) -> Result<u64, SendError> {
        let path = object_path(&bucket.name, &entry.key);
        let mut headers = replica_headers(entry);
        if entry.deleted {
            let reply = self.request("DELETE", &path, &headers, None, 0).await?;
            return expect(reply, 204, "a delete").map(|()| 0);
        }
        let which = bucket.versioning.map(|_| entry.version_ref());
        let listed = Found::from_records(cluster, &bucket.id, &entry.key, which, records);
        let found = match listed {
            Some(found) => found,
            None => match find_version(cluster, bucket, &entry.key, which, false).await {
                Ok(found) => found,
                Err(e) if gone(&e) => return Ok(0),
                Err(e) => return Err(e.into()),
            },
        };
        let record = &found.record;
        if record.version != entry.version {
            return Ok(0);
        }
        let sse = match &record.encryption {
            None => None,
            Some(encryption @ Encryption::S3 { master_key_id }) => {
                let key = (self.master_key.as_ref())
                    .filter(|k| k.id() == *master_key_id)
                    .ok_or_else(|| {
                        SendError::Local(format!(
                            "the object is encrypted with SSE-S3 master key {master_key_id}, which this gateway lacks"
                        ))
                    })?;
                headers.push(("x-amz-server-side-encryption".into(), "AES256".into()));
                Some((encryption.clone(), key.clone()))
            }
            // Never queued (`ops::commit`): without the client's key it cannot be read.
            Some(Encryption::Customer { .. }) => {
                return Err(SendError::Local(
                    "an object under a customer's key (SSE-C) cannot be read to be sent".into(),
                ))
            }
        };
        headers.push((REVISION_HEADER.into(), record.revision.to_string()));
        // The lock goes along (the peer's bucket must have Object Lock, or the PUT is refused);
        // a retention that has run out would be refused as in the past, and protects nothing.
        let mut object_headers = record.headers.clone();
        let mut lock = record.lock;
        lock.retention = lock.retention.filter(|r| r.until > now_millis());
        for (name, value) in lock_headers(&lock) {
            object_headers.push((name.into(), value));
        }
        if !record.tags.is_empty() {
            let tags: Vec<String> = (record.tags.iter())
                .map(|(k, v)| format!("{}={}", query_value(k), query_value(v)))
                .collect();
            object_headers.push(("x-amz-tagging".into(), tags.join("&")));
        }
        if record.parts.len() > 1 || record.etag.contains('-') {
            let object = (entry.key.as_str(), found);
            return (self.send_parts(cluster, bucket, object, headers, object_headers, sse)).await;
        }
        headers.extend(object_headers);
        headers.push(("content-length".into(), record.size.to_string()));
        if let Ok(md5) = hex::decode(&record.etag) {
            headers.push(("content-md5".into(), base64_md5(&md5)));
        }
        // A checksum of the whole object goes along, for the peer to check and keep.
        if let Some(checksum) = &record.checksum {
            let name = format!("x-amz-checksum-{}", checksum.algorithm.to_ascii_lowercase());
            headers.push((name, checksum.value.clone()));
        }
        let size = record.size;
        let body = match size {
            0 => node_rpc::body::full(bytes::Bytes::new()),
            _ => read::stream(cluster.clone(), found, 0, size - 1, sse_of(&sse)).await?,
        };
        let body = body.map_err(|e| e.into()).boxed();
        let reply = self
            .request("PUT", &path, &headers, Some(body), size)
            .await?;
        expect(reply, 200, "a PUT").map(|()| size)
    }

    /// Sends a version made of parts as a multipart upload with the same parts (so that the
    /// peer computes the same ETag and checksum of checksums, and a version over 5 GiB goes
    /// too), whose Complete carries `replica`, the headers that make it the replica. Each part
    /// is read on its own (a lookup each: parts are 5 MiB at least). An upload that fails is
    /// aborted.
    async fn send_parts(
        &self,
        cluster: &Arc<Cluster>,
        bucket: &BucketRecord,
        (key, found): (&str, Found),
        replica: Vec<(String, String)>,
        mut create: Vec<(String, String)>,
        sse: Option<(Encryption, WrappingKey)>,
    ) -> Result<u64, SendError> {
        let record = found.record.clone();
        drop(found);
        let path = object_path(&bucket.name, key);
        if sse.is_some() {
            create.push(("x-amz-server-side-encryption".into(), "AES256".into()));
        }
        if let Some(checksum) = &record.checksum {
            let kind = if checksum.composite {
                "COMPOSITE"
            } else {
                "FULL_OBJECT"
            };
            create.push((
                "x-amz-checksum-algorithm".into(),
                checksum.algorithm.clone(),
            ));
            create.push(("x-amz-checksum-type".into(), kind.into()));
        }
        let created = self
            .request("POST", &format!("{path}?uploads"), &create, None, 0)
            .await?;
        if created.status != 200 {
            return Err(refusal("a multipart upload", created.status, &created));
        }
        let text = created.text();
        let upload_id = s3_client::xml_values(&text, "UploadId")
            .next()
            .ok_or_else(|| SendError::Refused("the peer gave no UploadId".into()))?
            .to_string();
        let upload = format!("uploadId={}", query_value(&upload_id));
        let (object, request) = ((key, &record), (path.as_str(), upload.as_str()));
        let sent = (self.send_upload(cluster, bucket, object, request, replica, sse)).await;
        if !matches!(sent, Ok(Some(_))) {
            let abort = format!("{path}?{upload}");
            if let Err(e) = self.request("DELETE", &abort, &[], None, 0).await {
                tracing::warn!(error = %e, "a replica's multipart upload was not aborted");
            }
        }
        Ok(sent?.unwrap_or(0))
    }

    /// The parts of `record` and the Complete of their upload; `None` when the version is gone
    /// here meanwhile (what replaced it is sent in its own turn).
    #[allow(clippy::too_many_arguments)]
    async fn send_upload(
        &self,
        cluster: &Arc<Cluster>,
        bucket: &BucketRecord,
        (key, record): (&str, &ObjectRecord),
        (path, upload): (&str, &str),
        replica: Vec<(String, String)>,
        sse: Option<(Encryption, WrappingKey)>,
    ) -> Result<Option<u64>, SendError> {
        let which = bucket.versioning.map(|_| record.version_ref());
        let mut complete = String::from("<CompleteMultipartUpload>");
        let mut start = 0;
        for part in &record.parts {
            let found = match find_version(cluster, bucket, key, which, false).await {
                Ok(found) if found.record.version == record.version => found,
                Ok(_) => return Ok(None),
                Err(e) if gone(&e) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            let mut headers = vec![("content-length".to_string(), part.size.to_string())];
            if let Ok(md5) = hex::decode(&part.md5) {
                headers.push(("content-md5".into(), base64_md5(&md5)));
            }
            let _ = write!(
                complete,
                "<Part><PartNumber>{}</PartNumber><ETag>\"{}\"</ETag>",
                part.number, part.md5
            );
            if let Some(checksum) = &part.checksum {
                let algorithm = checksum.algorithm.to_ascii_lowercase();
                headers.push((
                    format!("x-amz-checksum-{algorithm}"),
                    checksum.value.clone(),
                ));
                let element = format!("Checksum{}", checksum.algorithm.to_ascii_uppercase());
                let _ = write!(complete, "<{element}>{}</{element}>", checksum.value);
            }
            complete.push_str("</Part>");
            let body = match part.size {
                0 => node_rpc::body::full(bytes::Bytes::new()),
                size => {
                    let end = start + size - 1;
                    read::stream(cluster.clone(), found, start, end, sse_of(&sse)).await?
                }
            };
            let body = body.map_err(|e| e.into()).boxed();
            let part_path = format!("{path}?partNumber={}&{upload}", part.number);
            let reply = (self.request("PUT", &part_path, &headers, Some(body), part.size)).await?;
            expect(reply, 200, "a part")?;
            start += part.size;
        }
        complete.push_str("</CompleteMultipartUpload>");
        let mut headers = replica;
        headers.push(("content-type".into(), "application/xml".into()));
        let complete_path = format!("{path}?{upload}");
        let body = node_rpc::body::full(complete.into_bytes())
            .map_err(|e| e.into())
            .boxed();
        let reply = self
            .request("POST", &complete_path, &headers, Some(body), 0)
            .await?;
        // A Complete may fail after its 200 has begun: the error is then in the body.
        if reply.status != 200 || reply.text().contains("<Error>") {
            return Err(refusal("a Complete", reply.status, &reply));
        }
        Ok(Some(record.size))
    }

    /// Sends the purge of one version (DeleteObject with `versionId`) as a replica.
    pub async fn purge(&self, bucket: &str, entry: &ListEntry) -> Result<(), SendError> {
        let path = format!(
            "{}?versionId={}",
            object_path(bucket, &entry.key),
            entry.version_ref()
        );
        let headers = replica_headers(entry);
        let reply = self.request("DELETE", &path, &headers, None, 0).await?;
        expect(reply, 204, "a purge")
    }

    /// A GET or HEAD of one object, as a client would send it (`path` with its query, the
    /// client's range and conditions in `headers`): the peer's answer, its body left to stream.
    pub async fn fetch(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<hyper::Response<hyper::body::Incoming>, SendError> {
        let signing = s3_client::BodySigning::Hashed;
        let sent = (self.client).request(method, path, headers, Default::default(), signing);
        tokio::time::timeout(FETCH_TIMEOUT, sent)
            .await
            .map_err(|_| {
                SendError::Unreachable(format!("{method} {path}: no answer in {FETCH_TIMEOUT:?}"))
            })?
            .map_err(|e| SendError::Unreachable(format!("{e:#}")))
    }

    /// Sends bucket records (`api::replica::apply_buckets`); the names of the deletions that
    /// wait there for a bucket to be emptied.
    pub async fn send_buckets(&self, records: &[BucketRecord]) -> Result<Vec<String>, SendError> {
        #[derive(serde::Deserialize)]
        struct Answer {
            waiting: Vec<String>,
        }
        let answer: Answer = self
            .post_records("buckets", "bucket records", records)
            .await?;
        Ok(answer.waiting)
    }

    /// Sends access key records, each secret sealed under the replication secret
    /// (`api::replica::apply_keys`); the ids of those the peer could not open.
    pub async fn send_keys(&self, records: &[KeyRecord]) -> Result<Vec<String>, SendError> {
        #[derive(serde::Deserialize)]
        struct Answer {
            refused: Vec<String>,
        }
        let answer: Answer = self.post_records("keys", "key records", records).await?;
        Ok(answer.refused)
    }

    /// Posts `records` (`what`, for errors) to `/_tessera/replication/{table}`; its JSON answer.
    async fn post_records<R: serde::Serialize, A: serde::de::DeserializeOwned>(
        &self,
        table: &str,
        what: &str,
        records: &[R],
    ) -> Result<A, SendError> {
        let body = serde_json::to_vec(records).map_err(|e| SendError::Local(e.to_string()))?;
        let path = format!("/_tessera/replication/{table}");
        let headers = [("content-type", "application/json")];
        let sent = self.client.send("POST", &path, &headers, body.into());
        let reply = tokio::time::timeout(BASE_TIMEOUT, sent)
            .await
            .map_err(|_| SendError::Unreachable(format!("POST {path}: no answer")))?
            .map_err(|e| SendError::Unreachable(format!("{e:#}")))?;
        if reply.status != 200 {
            return Err(refusal(what, reply.status, &reply));
        }
        serde_json::from_slice(&reply.body)
            .map_err(|e| SendError::Refused(format!("{what}: the peer answered {e}")))
    }

    async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        body: Option<s3_client::Body>,
        size: u64,
    ) -> Result<s3_client::Reply, SendError> {
        let headers: Vec<(&str, &str)> = (headers.iter())
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let sent = async {
            match body {
                Some(body) => self.client.stream(method, path, &headers, body).await,
                None => {
                    self.client
                        .send(method, path, &headers, Default::default())
                        .await
                }
            }
        };
        let limit = BASE_TIMEOUT + Duration::from_secs(size / MIN_RATE);
        let reply = tokio::time::timeout(limit, sent)
            .await
            .map_err(|_| {
                SendError::Unreachable(format!("{method} {path}: no answer in {limit:?}"))
            })?
            .map_err(|e| SendError::Unreachable(format!("{e:#}")))?;
        match reply.status {
            500.. => Err(refusal(method, reply.status, &reply)),
            _ => Ok(reply),
        }
    }
}

/// Whether a lookup's failure says that the version is no longer here to be sent.
fn gone(e: &OpError) -> bool {
    matches!(
        e,
        OpError::NoSuchKey
            | OpError::NoSuchVersion
            | OpError::DeleteMarker { .. }
            | OpError::DeleteMarkerVersion { .. }
    )
}

/// The keys to read an object encrypted with SSE-S3.
fn sse_of(sse: &Option<(Encryption, WrappingKey)>) -> Option<Sse> {
    (sse.as_ref()).map(|(encryption, key)| Sse::new(encryption.clone(), key.clone()))
}

fn base64_md5(md5: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(md5)
}

/// The headers that make a request a replica of `entry`.
fn replica_headers(entry: &ListEntry) -> Vec<(String, String)> {
    vec![
        (VERSION_HEADER.into(), entry.version.to_string()),
        (VERSIONED_HEADER.into(), entry.versioned.to_string()),
    ]
}

fn expect(reply: s3_client::Reply, status: u16, what: &str) -> Result<(), SendError> {
    match reply.status == status {
        true => Ok(()),
        false => Err(refusal(what, reply.status, &reply)),
    }
}

/// A peer's answer other than the one expected: `Unreachable` for a 5xx, `Refused` otherwise.
fn refusal(what: &str, status: u16, reply: &s3_client::Reply) -> SendError {
    let message = format!("the peer answered {what} with {status} {}", reply.code());
    match status {
        500.. => SendError::Unreachable(message),
        _ => SendError::Refused(message),
    }
}
