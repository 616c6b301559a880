//! The gateway's view of the storage nodes: where a key's fragments live, quorum calls to the
//! holders, and the bucket table.

use crate::error::S3Error;
use futures::future::join_all;
use placement::{Layout, NodeInfo};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use storage_node::record::{BucketId, BucketRecord, Version};
use storage_node::{ClusterConfig, NodeClient, RpcError};

/// How long a gateway trusts its copy of the bucket table before reading it again.
const BUCKET_CACHE_TTL: Duration = Duration::from_secs(2);

pub struct Cluster {
    pub layout: Layout,
    pub client: NodeClient,
    /// Holders that must commit before a write is acknowledged (W).
    pub write_quorum: usize,
    /// Longest wait for any one node: a call, or the next block of a fragment stream.
    pub timeout: Duration,
    buckets: Mutex<Option<(Instant, HashMap<String, BucketRecord>)>>,
}

/// One holder of a shard: the node and the fragment slot it keeps.
#[derive(Clone, Copy, Debug)]
pub struct Holder<'a> {
    pub node: &'a NodeInfo,
    pub fragment: u8,
}

impl Cluster {
    pub fn new(config: &ClusterConfig) -> Result<Cluster, placement::PlacementError> {
        Ok(Cluster {
            layout: config.layout()?,
            client: NodeClient::new(config.secret.clone(), config.rpc_timeout()),
            write_quorum: config.write_quorum(),
            timeout: config.rpc_timeout(),
            buckets: Mutex::new(None),
        })
    }

    pub fn width(&self) -> usize {
        self.layout.width()
    }

    /// Answers needed to be sure a read sees the latest acknowledged write: R + W > k + m.
    pub fn read_quorum(&self) -> usize {
        self.width() - self.write_quorum + 1
    }

    /// The k+m holders of a key, in fragment order.
    pub fn holders(&self, bucket: &BucketId, key: &str) -> Vec<Holder<'_>> {
        let shard = self.layout.shard_of(bucket, key.as_bytes());
        self.layout
            .holders(shard)
            .iter()
            .enumerate()
            .map(|(slot, &node)| Holder {
                node: &self.layout.nodes()[node],
                fragment: slot as u8,
            })
            .collect()
    }

    /// Runs `call` against every given node at once and returns each answer in order.
    pub async fn on_all<'a, T, F, Fut>(
        &self,
        nodes: &[&'a NodeInfo],
        call: F,
    ) -> Vec<Result<T, RpcError>>
    where
        F: Fn(&'a NodeInfo) -> Fut,
        Fut: Future<Output = Result<T, RpcError>>,
    {
        join_all(nodes.iter().map(|n| call(n))).await
    }

    pub fn all_nodes(&self) -> Vec<&NodeInfo> {
        self.layout.nodes().iter().collect()
    }

    /// The live bucket of that name, or `NoSuchBucket`.
    pub async fn bucket(&self, name: &str) -> Result<BucketRecord, S3Error> {
        self.buckets(false)
            .await?
            .remove(name)
            .filter(|b| !b.deleted)
            .ok_or(S3Error::NoSuchBucket)
    }

    /// The bucket table (newest record of each name, tombstones included) from a majority of nodes.
    pub async fn buckets(&self, fresh: bool) -> Result<HashMap<String, BucketRecord>, S3Error> {
        if !fresh {
            if let Some((at, table)) = &*self.buckets.lock().expect("bucket cache lock") {
                if at.elapsed() < BUCKET_CACHE_TTL {
                    return Ok(table.clone());
                }
            }
        }
        let nodes = self.all_nodes();
        let answers = self.on_all(&nodes, |n| self.client.buckets(&n.addr)).await;
        let mut ok = 0;
        let mut table: HashMap<String, BucketRecord> = HashMap::new();
        for records in answers.into_iter().flatten() {
            ok += 1;
            for record in records {
                match table.get(&record.name) {
                    Some(have) if have.version >= record.version => {}
                    _ => {
                        table.insert(record.name.clone(), record);
                    }
                }
            }
        }
        if ok < nodes.len() / 2 + 1 {
            return Err(S3Error::ServiceUnavailable(format!(
                "{ok} of {} nodes answered for the bucket table",
                nodes.len()
            )));
        }
        *self.buckets.lock().expect("bucket cache lock") = Some((Instant::now(), table.clone()));
        Ok(table)
    }

    /// Writes a bucket record to every node; a majority must take it.
    pub async fn put_bucket(&self, record: BucketRecord) -> Result<(), S3Error> {
        let nodes = self.all_nodes();
        let answers = self
            .on_all(&nodes, |n| self.client.put_bucket(&n.addr, &record))
            .await;
        let ok = answers.iter().filter(|a| a.is_ok()).count();
        *self.buckets.lock().expect("bucket cache lock") = None;
        if ok < nodes.len() / 2 + 1 {
            return Err(S3Error::ServiceUnavailable(format!(
                "{ok} of {} nodes took the bucket record",
                nodes.len()
            )));
        }
        Ok(())
    }

    pub fn new_bucket_record(name: &str) -> BucketRecord {
        BucketRecord {
            name: name.to_string(),
            id: rand::random(),
            version: Version::now(),
            deleted: false,
            ..BucketRecord::default()
        }
    }
}
