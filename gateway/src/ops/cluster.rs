//! The gateway's view of the storage nodes: where a key's fragments live, the codes objects are
//! written with, the clients that call the holders, and the bucket table.

use crate::config::GatewayConfig;
use crate::ops::error::OpError;
use crate::ops::liveness::Liveness;
use crate::ops::lookup_width::LookupWidth;
use crate::ops::node_calls::NodeCalls;
use crate::ops::quorum::{read_quorum, Quorum};
use crate::ops::secret_seal::SecretSeal;
use crate::ops::system_table::{Snapshot, Table};
use erasure::{Codec, StripeLayout};
use futures::future::join_all;
use node_rpc::protocol::Replicate;
use node_rpc::record::{BucketId, BucketRecord, KeyRecord, Version};
use node_rpc::{ClusterConfig, NodeClient, RpcError};
use placement::{Layout, NodeInfo};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// How long a gateway trusts its copy of the key table before reading it again.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(2);
/// How long a gateway trusts its copy of the bucket table before reading it again.
const BUCKET_CACHE_TTL: Duration = Duration::from_secs(2);
/// A bucket missing from a copy at least this old is looked for on the nodes (`Cluster::bucket`).
const BUCKET_MISS_REFRESH: Duration = Duration::from_millis(500);

pub struct Cluster {
    pub layout: Layout,
    pub client: NodeClient,
    /// The read path's calls (lookups, fragment reads, undoing an unfinished write): `client` in
    /// a gateway, made-up holders in unit tests (see `ops::node_calls`).
    pub calls: Arc<dyn NodeCalls>,
    /// Holders that must commit before a write is acknowledged (W).
    writes: Quorum,
    /// Longest wait for any one node: a call, or the next block of a fragment stream.
    pub timeout: Duration,
    pub liveness: Liveness,
    /// The cluster's k+m: multipart uploads and objects above `small_object_threshold`.
    pub codec: Codec,
    /// R data shards and k+m-R parity ones, for objects up to `small_object_threshold`: any read
    /// quorum of holders that have a version holds enough of its fragments to serve it.
    small_codec: Codec,
    /// How objects are laid out; see `GatewayConfig`.
    pub inline_threshold: u64,
    small_object_threshold: u64,
    /// Whether a lookup in a bucket asks R holders first or k (see `ops::lookup_width`).
    pub(crate) lookup_width: LookupWidth,
    pub block_size: usize,
    buckets: Table<BucketRecord>,
    /// The access keys (see `ops::keys`).
    pub(crate) keys: Table<KeyRecord>,
    /// Seals the key table's secrets.
    pub secrets: SecretSeal,
    /// This region's name and its peers', when this cluster is one region of several.
    pub region: Option<String>,
    pub peer_regions: Vec<String>,
    /// Nodes that hold a read quorum of every shard's holders (`Layout::read_cover`).
    read_cover: Vec<usize>,
}

/// One holder of a shard: the node and the fragment slot it keeps.
#[derive(Clone, Copy, Debug)]
pub struct Holder<'a> {
    pub node: &'a NodeInfo,
    pub slot: u8,
    /// Set when `node` is a substitute keeping this slot for that holder, which is down.
    pub hint_for: Option<&'a NodeInfo>,
}

/// Where one write goes (`Cluster::write_holders`), in slot order.
///
/// The holders left out of it (down, and no substitute free) are noted as lacking a write when
/// it ends, as this is dropped, not when it begins: a heal that starts while the write is in
/// flight may compare the node with its peers before the write reaches them, and must then be
/// followed by another. (Noted at the start, the probe cleared the note as that heal began, and
/// the node never got the write: two more holders down then left too few fragments.)
pub struct WriteTargets<'a> {
    holders: Vec<Holder<'a>>,
    left_out: Vec<usize>,
    liveness: &'a Liveness,
}

impl<'a> std::ops::Deref for WriteTargets<'a> {
    type Target = [Holder<'a>];

    fn deref(&self) -> &[Holder<'a>] {
        &self.holders
    }
}

impl Drop for WriteTargets<'_> {
    fn drop(&mut self) {
        for &node in &self.left_out {
            self.liveness.missed(node);
        }
    }
}

impl Cluster {
    pub fn new(config: &ClusterConfig, gateway: &GatewayConfig) -> anyhow::Result<Cluster> {
        let client = NodeClient::for_cluster(config)?;
        Cluster::with_calls(config, gateway, client.clone(), Arc::new(client))
    }

    /// A cluster whose read path calls `calls` rather than `client`.
    pub fn with_calls(
        config: &ClusterConfig,
        gateway: &GatewayConfig,
        client: NodeClient,
        calls: Arc<dyn NodeCalls>,
    ) -> anyhow::Result<Cluster> {
        let layout = config.layout()?;
        let width = config.data_shards + config.parity_shards;
        let small_k = read_quorum(width, config.write_quorum()).clamp(1, config.data_shards);
        let read_cover = layout.read_cover(read_quorum(width, config.write_quorum()));
        Ok(Cluster {
            read_cover,
            liveness: Liveness::new(layout.nodes().len()),
            layout,
            client,
            calls,
            writes: Quorum {
                needed: config.write_quorum(),
            },
            timeout: config.rpc_timeout(),
            codec: Codec::shared(config.data_shards, config.parity_shards)?,
            small_codec: Codec::shared(small_k, width - small_k)?,
            inline_threshold: gateway.inline_threshold,
            small_object_threshold: gateway.small_object_threshold,
            lookup_width: LookupWidth::default(),
            block_size: gateway.block_size,
            buckets: Table::new(BUCKET_CACHE_TTL),
            keys: Table::new(KEY_CACHE_TTL),
            secrets: SecretSeal::new(&config.secret),
            region: config.region.as_ref().map(|r| r.name.clone()),
            peer_regions: (config.region.iter())
                .flat_map(|r| r.peers.iter().map(|p| p.name.clone()))
                .collect(),
        })
    }

    /// The peer regions a change made here to `bucket` is queued for (`background::replication`):
    /// those of its replication configuration, or without one every peer; `None` when there are
    /// none (a cluster of one region, or a bucket that replicates elsewhere).
    pub fn replicate(&self, bucket: &BucketRecord) -> Option<Replicate> {
        let here = self.region.as_deref()?;
        let targets: Vec<String> = match &bucket.replication {
            Some(config) => (config.targets(here).into_iter())
                .filter(|t| self.peer_regions.contains(t))
                .collect(),
            None => self.peer_regions.clone(),
        };
        (!targets.is_empty()).then(|| Replicate {
            bucket: bucket.name.clone(),
            targets,
        })
    }

    /// Whether small objects are coded with R data shards (`small_object_threshold` > 0), so
    /// that a read may first ask only a read quorum of holders, not k (see `ops::lookup_width`).
    pub fn small_objects(&self) -> bool {
        self.small_object_threshold > 0
    }

    /// The codec a new single-part object of `size` bytes is written with (with a threshold of 0,
    /// empty objects too are erasure-coded).
    pub fn codec_for(&self, size: u64) -> &Codec {
        if self.small_objects() && size <= self.small_object_threshold {
            &self.small_codec
        } else {
            &self.codec
        }
    }

    /// How an object of `size` bytes written now with `codec` is cut into stripes, and the
    /// format of its frames.
    pub fn stripe_layout(&self, codec: &Codec, size: u64) -> StripeLayout {
        StripeLayout {
            size,
            data_shards: codec.data_shards(),
            block_size: self.block_size,
            frames: self.liveness.frame_format(),
        }
    }

    pub fn width(&self) -> usize {
        self.layout.width()
    }

    /// W of a key's holders: a write is acknowledged once that many committed it.
    pub fn write_quorum(&self) -> Quorum {
        self.writes
    }

    /// R of a key's holders, enough to meet every write quorum (R + W > k+m): a read that hears
    /// from that many sees the latest acknowledged write.
    pub fn read_quorum(&self) -> Quorum {
        Quorum {
            needed: read_quorum(self.width(), self.writes.needed),
        }
    }

    /// The k+m holders of a key, in slot order.
    pub fn holders(&self, bucket: &BucketId, key: &str) -> Vec<Holder<'_>> {
        let shard = self.layout.shard_of(bucket, key.as_bytes());
        self.layout
            .holders(shard)
            .iter()
            .enumerate()
            .map(|(slot, &node)| Holder {
                node: &self.layout.nodes()[node],
                slot: slot as u8,
                hint_for: None,
            })
            .collect()
    }

    /// Where a write of a key goes: every holder that is up, and for each one that is down, a
    /// substitute that keeps its share as a hint (the first live non-holder on the ring, from the
    /// down holder's own zone when one is free, so that zones keep their share). A down holder
    /// without a substitute is left out, and healed when it returns (see `WriteTargets`).
    pub fn write_holders(&self, bucket: &BucketId, key: &str) -> WriteTargets<'_> {
        let shard = self.layout.shard_of(bucket, key.as_bytes());
        let nodes = self.layout.nodes();
        let mut free: Vec<usize> = self
            .layout
            .substitutes(shard)
            .into_iter()
            .filter(|&i| self.liveness.is_up(i))
            .collect();
        let mut targets = Vec::with_capacity(self.width());
        let mut left_out = Vec::new();
        for (slot, &holder) in self.layout.holders(shard).iter().enumerate() {
            let slot = slot as u8;
            if self.liveness.is_up(holder) {
                targets.push(Holder {
                    node: &nodes[holder],
                    slot,
                    hint_for: None,
                });
                continue;
            }
            let zone = &nodes[holder].zone;
            let pick = free
                .iter()
                .position(|&i| nodes[i].zone == *zone)
                .or((!free.is_empty()).then_some(0));
            match pick {
                Some(at) => targets.push(Holder {
                    node: &nodes[free.remove(at)],
                    slot,
                    hint_for: Some(&nodes[holder]),
                }),
                None => left_out.push(holder),
            }
        }
        WriteTargets {
            holders: targets,
            left_out,
            liveness: &self.liveness,
        }
    }

    /// The client for metadata calls to a holder: a substitute keeps them as hints.
    pub fn client_for(&self, holder: &Holder<'_>) -> NodeClient {
        match holder.hint_for {
            Some(target) => self.client.hinted(&target.id),
            None => self.client.clone(),
        }
    }

    /// Whether the last probe found `node` answering.
    pub fn is_up(&self, node: &NodeInfo) -> bool {
        let nodes = self.layout.nodes();
        nodes
            .iter()
            .position(|n| n.id == node.id)
            .is_none_or(|index| self.liveness.is_up(index))
    }

    /// Notes that `holder`, when it is a substitute, took a share of a write as a hint: until the
    /// hint is handed over, the holder it stands in for lacks that write (see
    /// `Liveness::reads_settled`). Called once the call was answered, before the write is
    /// acknowledged.
    pub fn note_hinted(&self, holder: &Holder<'_>) {
        if let Some(target) = holder.hint_for {
            if let Some(index) = self.node_index(&target.id) {
                self.liveness.note_hinted(index);
            }
        }
    }

    /// The index of the node with that id in the layout's node list.
    pub fn node_index(&self, id: &str) -> Option<usize> {
        self.layout.nodes().iter().position(|n| n.id == id)
    }

    /// Notes that a write went on without `holder`'s share: it is healed when it answers again.
    pub fn note_missed(&self, holder: &Holder<'_>) {
        let id = &holder.hint_for.unwrap_or(holder.node).id;
        if let Some(index) = self.node_index(id) {
            self.liveness.missed(index);
        }
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

    /// The nodes that hold a read quorum of every shard's holders, when hearing from them is
    /// enough to see every acknowledged write (`Liveness::reads_settled`) and they are fewer
    /// than all: what a listing asks first (see `ops::list`).
    pub fn read_cover(&self) -> Option<Vec<&NodeInfo>> {
        let nodes = self.layout.nodes();
        (self.read_cover.len() < nodes.len() && self.liveness.reads_settled())
            .then(|| self.read_cover.iter().map(|&i| &nodes[i]).collect())
    }

    /// The live bucket of that name, or `NoSuchBucket`; one made through another gateway a moment
    /// ago is found (`Table::lookup`).
    pub async fn bucket(&self, name: &str) -> Result<BucketRecord, OpError> {
        let live = |b: &BucketRecord| !b.deleted;
        (self.buckets)
            .lookup(name, live, BUCKET_MISS_REFRESH, || self.buckets(true))
            .await?
            .ok_or(OpError::NoSuchBucket)
    }

    /// The bucket table (newest record of each name, tombstones included) from a majority of
    /// nodes, or from the cache unless `fresh`.
    pub async fn buckets(&self, fresh: bool) -> Result<Snapshot<BucketRecord>, OpError> {
        let nodes = self.all_nodes();
        self.buckets
            .read(&nodes, fresh, "nodes answered for the bucket table", |n| {
                self.client.buckets(&n.addr)
            })
            .await
    }

    /// Every live bucket, fresh from a majority of nodes, in name order.
    pub async fn live_buckets(&self) -> Result<Vec<BucketRecord>, OpError> {
        let mut buckets: Vec<BucketRecord> = self
            .buckets(true)
            .await?
            .values()
            .filter(|b| !b.deleted)
            .cloned()
            .collect();
        buckets.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(buckets)
    }

    /// Writes a bucket record to every node; a majority must take it.
    pub async fn put_bucket(&self, record: BucketRecord) -> Result<(), OpError> {
        let nodes = self.all_nodes();
        self.buckets
            .write(&nodes, "nodes took the bucket record", |n| {
                self.client.put_bucket(&n.addr, &record)
            })
            .await
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
