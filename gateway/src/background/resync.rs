//! Resync: makes a peer region hold every version of a bucket that this region holds. It walks
//! the bucket's versions here (every version with versioning, each key's current record
//! otherwise), asks the peer for each with a HEAD signed by this region's replication key, and
//! sends what the peer lacks (or holds an older null version of) as a replica: the object's bytes
//! streamed from k fragments into a PUT, or a DELETE for a delete marker or tombstone, each with
//! its own version (`api::replica`). Replaying a version the peer has is a no-op there, so a
//! resync interrupted or run twice does no harm. One runs at a time; its progress is on
//! `GET /_tessera/replication/resync`.

use crate::ops::cluster::Cluster;
use crate::ops::list::{list_versions, VersionQuery};
use crate::ops::lookup::find_version;
use crate::ops::read;
use crate::ops::replica::{VERSIONED_HEADER, VERSION_HEADER, VERSION_OF_HEADER};
use crate::s3::error::S3Error;
use crate::s3::object_lock::lock_headers;
use base64::Engine as _;
use futures::StreamExt;
use http_body_util::BodyExt;
use node_rpc::cluster::RegionConfig;
use node_rpc::object_lock::now_millis;
use node_rpc::protocol::unix_now;
use node_rpc::record::{BucketRecord, ListEntry, VersionRef};
use s3_client::{object_path, query_value, Client, ClientConfig};
use serde::Serialize;
use std::sync::{Arc, Mutex};

/// Versions compared and sent at once: enough to keep the link busy with small objects (one at a
/// time, each costs two round trips), few enough that large ones hold at most this many streams
/// (each a few blocks ahead of the peer) in memory.
const IN_FLIGHT: usize = 16;

/// Where a resync stands.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ResyncProgress {
    pub bucket: String,
    pub target: String,
    pub running: bool,
    /// Versions compared with the target, and those it lacked and was sent.
    pub versions_checked: u64,
    pub versions_sent: u64,
    pub bytes_sent: u64,
    pub errors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub started_unix: u64,
    pub finished_unix: Option<u64>,
}

/// Runs one resync at a time and keeps its progress.
pub struct Resyncer {
    cluster: Arc<Cluster>,
    region: Option<RegionConfig>,
    progress: Mutex<Option<ResyncProgress>>,
}

impl Resyncer {
    pub fn new(cluster: Arc<Cluster>, region: Option<RegionConfig>) -> Resyncer {
        Resyncer {
            cluster,
            region,
            progress: Mutex::default(),
        }
    }

    /// The resync running, or the last one.
    pub fn progress(&self) -> Option<ResyncProgress> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<ResyncProgress>> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut ResyncProgress)) {
        if let Some(p) = self.lock().as_mut() {
            f(p);
        }
    }

    /// Starts sending `target` what it lacks of `bucket`, unless a resync is running.
    pub async fn start(
        self: &Arc<Self>,
        bucket: &str,
        target: &str,
    ) -> Result<ResyncProgress, S3Error> {
        let region = self.region.as_ref().ok_or_else(|| {
            S3Error::InvalidRequest("this cluster has no [cluster.region] with peers".into())
        })?;
        let peer = region
            .peers
            .iter()
            .find(|p| p.name == target)
            .ok_or_else(|| S3Error::InvalidArgument(format!("no peer region {target}")))?;
        let client = Client::new(ClientConfig {
            endpoint: peer.endpoint.clone(),
            access_key: RegionConfig::replication_key_id(&region.name),
            secret_key: region.replication_secret_key(),
            region: peer.name.clone(),
            ca_file: None,
            insecure: false,
        })
        .map_err(|e| S3Error::InvalidRequest(format!("peer region {target}: {e:#}")))?;
        let bucket = self.cluster.bucket(bucket).await?;
        let progress = ResyncProgress {
            bucket: bucket.name.clone(),
            target: target.to_string(),
            running: true,
            started_unix: unix_now(),
            ..ResyncProgress::default()
        };
        {
            let mut current = self.lock();
            if current.as_ref().is_some_and(|p| p.running) {
                return Err(S3Error::InvalidRequest(
                    "a resync is already running".into(),
                ));
            }
            *current = Some(progress.clone());
        }
        let resyncer = self.clone();
        tokio::spawn(async move {
            // In a task of its own, so that a panic in it still clears `running`.
            let worker = resyncer.clone();
            let outcome = tokio::spawn(async move { worker.run(&client, &bucket).await }).await;
            let error = match outcome {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(format!("{e:?}")),
                Err(e) => Some(format!("the resync task failed: {e}")),
            };
            resyncer.update(|p| {
                p.running = false;
                p.finished_unix = Some(unix_now());
                if let Some(e) = error {
                    tracing::warn!(error = %e, "resync stopped");
                    p.errors += 1;
                    p.last_error = Some(e);
                }
            });
        });
        Ok(progress)
    }

    async fn run(&self, peer: &Client, bucket: &BucketRecord) -> Result<(), S3Error> {
        let mut marker = None;
        loop {
            let query = VersionQuery {
                prefix: String::new(),
                delimiter: None,
                key_marker: marker.as_ref().map(|(key, _): &(String, _)| key.clone()),
                version_marker: marker.as_ref().and_then(|(_, version)| *version),
                max_keys: 1000,
                hide_markers: false,
            };
            let page = list_versions(&self.cluster, &bucket.id, &query).await?;
            // Collected first: a stream over the mapping iterator itself would not be `Send`
            // (a closure's lifetimes, rust-lang/rust#110338), and the resync runs in a task.
            let checked: Vec<_> = (page.versions.iter())
                .map(|(entry, _)| self.sync(peer, bucket, entry))
                .collect();
            let mut checked = futures::stream::iter(checked).buffer_unordered(IN_FLIGHT);
            while let Some((entry, sent)) = checked.next().await {
                if let Err(e) = &sent {
                    tracing::warn!(bucket = %bucket.name, key = %entry.key, error = %e, "resync could not send a version");
                }
                self.update(|p| {
                    p.versions_checked += 1;
                    match sent {
                        Ok(Some(bytes)) => {
                            p.versions_sent += 1;
                            p.bytes_sent += bytes;
                        }
                        Ok(None) => {}
                        Err(e) => {
                            p.errors += 1;
                            p.last_error = Some(e);
                        }
                    }
                });
            }
            match page.next {
                Some(next) => marker = Some(next),
                None => return Ok(()),
            }
        }
    }

    /// Sends the peer one version if it lacks it; the bytes sent, if it was sent.
    async fn sync<'a>(
        &self,
        peer: &Client,
        bucket: &BucketRecord,
        entry: &'a ListEntry,
    ) -> (&'a ListEntry, Result<Option<u64>, String>) {
        let sent = match peer_lacks(peer, bucket, entry).await {
            Ok(true) => self.send(peer, bucket, entry).await.map(Some),
            Ok(false) => Ok(None),
            Err(e) => Err(e),
        };
        (entry, sent)
    }

    /// Sends one version to the peer as a replica; the bytes sent.
    async fn send(
        &self,
        peer: &Client,
        bucket: &BucketRecord,
        entry: &ListEntry,
    ) -> Result<u64, String> {
        let path = object_path(&bucket.name, &entry.key);
        let (version, versioned) = (entry.version.to_string(), entry.versioned.to_string());
        let mut headers: Vec<(String, String)> = vec![
            (VERSION_HEADER.into(), version),
            (VERSIONED_HEADER.into(), versioned),
        ];
        let expect = |reply: s3_client::Reply, status: u16| match reply.status == status {
            true => Ok(()),
            false => Err(format!(
                "the peer answered {}: {}",
                reply.status,
                reply.text()
            )),
        };
        if entry.deleted {
            let reply = peer
                .send("DELETE", &path, &pairs(&headers), Default::default())
                .await
                .map_err(|e| format!("{e:#}"))?;
            return expect(reply, 204).map(|()| 0);
        }
        let which = bucket.versioning.map(|_| entry.version_ref());
        let found = find_version(&self.cluster, bucket, &entry.key, which, false)
            .await
            .map_err(|e| format!("{e:?}"))?;
        let record = &found.record;
        if record.version != entry.version {
            return Ok(0); // overwritten since the listing: the newer version is sent instead
        }
        if record.encryption.is_some() {
            return Err("encrypted objects are not replicated yet".into());
        }
        headers.extend(record.headers.iter().cloned());
        headers.push(("content-length".into(), record.size.to_string()));
        if let Ok(md5) = hex::decode(&record.etag) {
            let md5 = base64::engine::general_purpose::STANDARD.encode(md5);
            headers.push(("content-md5".into(), md5));
        }
        // The lock goes along (the peer's bucket must have Object Lock, or the PUT is refused);
        // a retention that has run out would be refused as in the past, and protects nothing.
        let mut lock = record.lock;
        lock.retention = lock.retention.filter(|r| r.until > now_millis());
        for (name, value) in lock_headers(&lock) {
            headers.push((name.into(), value));
        }
        if !record.tags.is_empty() {
            let tags: Vec<String> = record
                .tags
                .iter()
                .map(|(k, v)| format!("{}={}", query_value(k), query_value(v)))
                .collect();
            headers.push(("x-amz-tagging".into(), tags.join("&")));
        }
        let size = record.size;
        let body = match size {
            0 => node_rpc::body::full(bytes::Bytes::new()),
            _ => read::stream(self.cluster.clone(), found, 0, size - 1, None)
                .await
                .map_err(|e| format!("{e:?}"))?,
        };
        let body = body.map_err(|e| e.into()).boxed();
        let reply = peer
            .stream("PUT", &path, &pairs(&headers), body)
            .await
            .map_err(|e| format!("{e:#}"))?;
        expect(reply, 200).map(|()| size)
    }
}

fn pairs(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// Whether the peer lacks the version: it does not have it, or (a null version, which it may
/// hold another version of) holds an older one. A key's tombstone is lacking only where the
/// peer still has an older object to delete.
async fn peer_lacks(
    peer: &Client,
    bucket: &BucketRecord,
    entry: &ListEntry,
) -> Result<bool, String> {
    let id = match bucket.versioning {
        Some(_) => entry.version_ref(),
        None => VersionRef::Null,
    };
    let path = format!("{}?versionId={id}", object_path(&bucket.name, &entry.key));
    let reply = peer
        .send("HEAD", &path, &[], Default::default())
        .await
        .map_err(|e| format!("{e:#}"))?;
    match reply.status {
        404 => Ok(entry.versioned || !entry.deleted),
        200 | 405 if entry.versioned => Ok(false),
        200 | 405 => Ok(reply
            .header(VERSION_OF_HEADER)
            .and_then(|v| v.parse().ok())
            .is_none_or(|theirs: node_rpc::record::Version| theirs < entry.version)),
        status => Err(format!("the peer answered a HEAD with {status}")),
    }
}
