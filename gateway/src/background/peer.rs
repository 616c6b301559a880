//! A peer region as this region's replication reaches it: its S3 endpoint, signed with this
//! region's replication key, and the requests that send it one version as a replica (which its
//! `api::replica` applies): the object's bytes streamed from k fragments into a PUT, a DELETE for
//! a delete marker or tombstone, a DELETE with `versionId` for a purge. Used by the drain of the
//! outboxes (`background::replication`), by resync (`background::resync`), and by the reads that
//! fall back to a peer (`api::fallback`).

use crate::ops::cluster::Cluster;
use crate::ops::encryption::{Sse, WrappingKey};
use crate::ops::lookup::find_version;
use crate::ops::read;
use crate::ops::replica::{REVISION_HEADER, VERSIONED_HEADER, VERSION_HEADER, VERSION_OF_HEADER};
use crate::s3::error::S3Error;
use crate::s3::object_lock::lock_headers;
use base64::Engine as _;
use http_body_util::BodyExt;
use node_rpc::cluster::RegionConfig;
use node_rpc::object_lock::now_millis;
use node_rpc::record::{BucketRecord, Encryption, ListEntry, VersionRef};
use s3_client::{object_path, query_value, Client, ClientConfig};
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

impl From<S3Error> for SendError {
    fn from(e: S3Error) -> SendError {
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
    ) -> Result<Peer, S3Error> {
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

    /// Sends one version as a replica; the bytes sent. A version that is gone here (purged, or
    /// a null version overwritten since it was listed or queued) is not sent: what replaced it
    /// is sent in its own turn.
    pub async fn send(
        &self,
        cluster: &Arc<Cluster>,
        bucket: &BucketRecord,
        entry: &ListEntry,
    ) -> Result<u64, SendError> {
        let path = object_path(&bucket.name, &entry.key);
        let mut headers = replica_headers(entry);
        if entry.deleted {
            let reply = self.request("DELETE", &path, &headers, None, 0).await?;
            return expect(reply, 204, "a delete").map(|()| 0);
        }
        let which = bucket.versioning.map(|_| entry.version_ref());
        let found = match find_version(cluster, bucket, &entry.key, which, false).await {
            Ok(found) => found,
            Err(
                S3Error::NoSuchKey
                | S3Error::NoSuchVersion
                | S3Error::DeleteMarker { .. }
                | S3Error::DeleteMarkerVersion { .. },
            ) => return Ok(0),
            Err(e) => return Err(e.into()),
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
                Some(Sse::new(encryption.clone(), key.clone()))
            }
            // Never queued (`ops::commit`): without the client's key it cannot be read.
            Some(Encryption::Customer { .. }) => {
                return Err(SendError::Local(
                    "an object under a customer's key (SSE-C) cannot be read to be sent".into(),
                ))
            }
        };
        headers.push((REVISION_HEADER.into(), record.revision.to_string()));
        headers.extend(record.headers.iter().cloned());
        headers.push(("content-length".into(), record.size.to_string()));
        if let Ok(md5) = hex::decode(&record.etag) {
            let md5 = base64::engine::general_purpose::STANDARD.encode(md5);
            headers.push(("content-md5".into(), md5));
        }
        // A checksum of the whole object goes along, for the peer to check and keep (a
        // multipart object's checksum of its parts' checksums cannot be checked on one PUT).
        if let Some(checksum) = record.checksum.as_ref().filter(|c| !c.composite) {
            let name = format!("x-amz-checksum-{}", checksum.algorithm.to_ascii_lowercase());
            headers.push((name, checksum.value.clone()));
        }
        // The lock goes along (the peer's bucket must have Object Lock, or the PUT is refused);
        // a retention that has run out would be refused as in the past, and protects nothing.
        let mut lock = record.lock;
        lock.retention = lock.retention.filter(|r| r.until > now_millis());
        for (name, value) in lock_headers(&lock) {
            headers.push((name.into(), value));
        }
        if !record.tags.is_empty() {
            let tags: Vec<String> = (record.tags.iter())
                .map(|(k, v)| format!("{}={}", query_value(k), query_value(v)))
                .collect();
            headers.push(("x-amz-tagging".into(), tags.join("&")));
        }
        let size = record.size;
        let body = match size {
            0 => node_rpc::body::full(bytes::Bytes::new()),
            _ => read::stream(cluster.clone(), found, 0, size - 1, sse).await?,
        };
        let body = body.map_err(|e| e.into()).boxed();
        let reply = self
            .request("PUT", &path, &headers, Some(body), size)
            .await?;
        expect(reply, 200, "a PUT").map(|()| size)
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
        let body = serde_json::to_vec(records).map_err(|e| SendError::Local(e.to_string()))?;
        let path = "/_tessera/replication/buckets";
        let headers = [("content-type", "application/json")];
        let sent = self.client.send("POST", path, &headers, body.into());
        let reply = tokio::time::timeout(BASE_TIMEOUT, sent)
            .await
            .map_err(|_| SendError::Unreachable(format!("POST {path}: no answer")))?
            .map_err(|e| SendError::Unreachable(format!("{e:#}")))?;
        if reply.status != 200 {
            return Err(refusal("bucket records", reply.status, &reply));
        }
        #[derive(serde::Deserialize)]
        struct Answer {
            waiting: Vec<String>,
        }
        let answer: Answer = serde_json::from_slice(&reply.body)
            .map_err(|e| SendError::Refused(format!("bucket records: the peer answered {e}")))?;
        Ok(answer.waiting)
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
