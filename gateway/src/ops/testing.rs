//! Made-up holders for the read path's unit tests: a cluster of six nodes in three zones (4+2,
//! W = 5, R = 2) whose `NodeCalls` are answered from memory, each node as slow, failing, behind
//! or out of date as a test says, with every call logged.

use crate::config::GatewayConfig;
use crate::ops::cluster::Cluster;
use crate::ops::fragment_stream::FragmentStream;
use crate::ops::node_calls::NodeCalls;
use bytes::Bytes;
use erasure::{Codec, FrameFormat, StripeLayout};
use futures::future::{BoxFuture, FutureExt};
use node_rpc::protocol::{Lookup, UndoRequest};
use node_rpc::record::{BucketId, Inline, ObjectRecord, PartData, Version, VersionRef};
use node_rpc::{ClusterConfig, NodeClient, RpcError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const BUCKET: BucketId = [7; 16];
pub const KEY: &str = "key";

/// What one node answers.
#[derive(Clone, Default)]
pub struct Node {
    /// Its record of the key (any version asked for gets it, or none when it is another).
    pub record: Option<ObjectRecord>,
    /// What it keeps of the key older than its record (`object_before`).
    pub before: Option<ObjectRecord>,
    /// Records it keeps as hints, by the id of the holder each is for.
    pub hinted: HashMap<String, ObjectRecord>,
    /// Writes it keeps for others (`hints`).
    pub hints: u64,
    /// Its fragment files, by slot.
    pub fragments: HashMap<u8, Bytes>,
    /// How long each call takes.
    pub delay: Duration,
    /// How long a fragment read takes to start, beside `delay`.
    pub fragment_delay: Duration,
    /// Every call fails (after `delay`).
    pub down: bool,
}

/// The nodes, by address, and what was asked of them.
#[derive(Default)]
pub struct Nodes {
    pub nodes: Mutex<HashMap<String, Node>>,
    pub log: Mutex<Vec<String>>,
}

impl Nodes {
    pub fn set(&self, addr: &str, node: Node) {
        self.nodes.lock().unwrap().insert(addr.to_string(), node);
    }

    /// The calls made so far, as "<call> <addr>".
    pub fn calls(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Logs the call and answers it with `answer(node)` after the node's delay.
    fn answer<T: Send + 'static>(
        &self,
        call: &str,
        addr: &str,
        answer: impl FnOnce(&Node) -> Option<T>,
    ) -> BoxFuture<'static, Result<T, RpcError>> {
        self.log.lock().unwrap().push(format!("{call} {addr}"));
        let node = self.nodes.lock().unwrap().get(addr).cloned();
        let node = node.unwrap_or_default();
        let answer = (!node.down).then(|| answer(&node)).flatten();
        let delay = match call {
            "fragment" => node.delay + node.fragment_delay,
            _ => node.delay,
        };
        async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            answer.ok_or(RpcError::Timeout)
        }
        .boxed()
    }
}

/// The node's record when it is of the version asked for (the current one for `None`).
fn of_version(node: &Node, which: Option<VersionRef>) -> Lookup {
    let record = node.record.clone();
    Lookup::of(record.filter(|r| which.is_none_or(|w| w == r.version_ref())))
}

impl NodeCalls for Nodes {
    fn object(
        &self,
        addr: &str,
        _: BucketId,
        _: &str,
        which: Option<VersionRef>,
    ) -> BoxFuture<'static, Result<Lookup, RpcError>> {
        self.answer("object", addr, |n| Some(of_version(n, which)))
    }

    fn object_and_fragment(
        &self,
        addr: &str,
        _: BucketId,
        _: &str,
        which: Option<VersionRef>,
    ) -> BoxFuture<'static, Result<(Lookup, Option<FragmentStream>), RpcError>> {
        self.answer("object+fragment", addr, |n| {
            let mut lookup = of_version(n, which);
            let file = (lookup.record.as_ref()).and_then(|r| n.fragments.get(&r.slot));
            lookup.fragment_len = file.map(|f| f.len() as u64);
            let stream = file.map(|f| FragmentStream::Inline(f.clone()));
            Some((lookup, stream))
        })
    }

    fn object_before(
        &self,
        addr: &str,
        _: BucketId,
        _: &str,
        _: Version,
    ) -> BoxFuture<'static, Result<Lookup, RpcError>> {
        self.answer("before", addr, |n| Some(Lookup::of(n.before.clone())))
    }

    fn hinted_record(
        &self,
        addr: &str,
        holder: &str,
        _: BucketId,
        _: &str,
        _: Version,
    ) -> BoxFuture<'static, Result<Lookup, RpcError>> {
        let call = format!("hinted-for-{holder}");
        self.answer(&call, addr, |n| {
            Some(Lookup::of(n.hinted.get(holder).cloned()))
        })
    }

    fn hints(&self, addr: &str) -> BoxFuture<'static, Result<u64, RpcError>> {
        self.answer("hints", addr, |n| Some(n.hints))
    }

    fn undo(&self, addr: &str, _: UndoRequest) -> BoxFuture<'static, Result<bool, RpcError>> {
        self.answer("undo", addr, |_| Some(true))
    }

    fn fragment(
        &self,
        addr: &str,
        _: &str,
        slot: u8,
        offset: u64,
        len: u64,
    ) -> BoxFuture<'static, Result<FragmentStream, RpcError>> {
        self.answer("fragment", addr, |n| {
            let file = n.fragments.get(&slot)?;
            let range = offset as usize..(offset + len) as usize;
            let whole = range.end <= file.len();
            whole.then(|| FragmentStream::Inline(file.slice(range)))
        })
    }
}

/// A 4+2 cluster of six nodes in three zones, at addresses nothing listens on.
pub fn config() -> (ClusterConfig, GatewayConfig) {
    config_at(
        &(1..=6)
            .map(|port| format!("127.0.0.1:{port}"))
            .collect::<Vec<_>>(),
    )
}

/// The same cluster with its nodes at `addrs`.
fn config_at(addrs: &[String]) -> (ClusterConfig, GatewayConfig) {
    let nodes: Vec<_> = (addrs.iter().enumerate())
        .map(|(i, addr)| {
            serde_json::json!({"id": format!("n{i}"), "zone": format!("z{}", i / 2),
                               "addr": addr})
        })
        .collect();
    let config = serde_json::json!({"secret": "s", "nodes": nodes});
    let gateway = serde_json::json!({
        "listen": "127.0.0.1:0", "access_key_id": "k", "secret_access_key": "s"});
    (
        serde_json::from_value(config).unwrap(),
        serde_json::from_value(gateway).unwrap(),
    )
}

/// That cluster, with its read path answered by `nodes`, after one probe round that found every
/// node up and none behind.
pub fn cluster(nodes: Arc<Nodes>) -> Cluster {
    cluster_of(config(), nodes)
}

/// The same with its nodes at `addrs`, where a test may listen: the calls outside the read path
/// (commits: a write, a read repair) go over the network.
pub fn cluster_at(addrs: &[String], nodes: Arc<Nodes>) -> Cluster {
    cluster_of(config_at(addrs), nodes)
}

fn cluster_of((config, gateway): (ClusterConfig, GatewayConfig), nodes: Arc<Nodes>) -> Cluster {
    let client = NodeClient::for_cluster(&config).unwrap();
    let cluster = Cluster::with_calls(&config, &gateway, client, nodes).unwrap();
    let live = &cluster.liveness;
    live.finish_round(live.now(), vec![Vec::new(); 6]);
    cluster
}

/// The addresses of the key's holders, in slot order.
pub fn holders(cluster: &Cluster) -> Vec<String> {
    (cluster.holders(&BUCKET, KEY).iter())
        .map(|h| h.node.addr.clone())
        .collect()
}

/// A version of the key: `bytes` coded k+m (6-k parity) in blocks of 1 KiB, inline or in
/// fragment files. Returns each slot's record and fragment file (empty when inline).
pub fn version(micros: u64, k: usize, bytes: &[u8], inline: bool) -> Vec<(ObjectRecord, Bytes)> {
    let codec = Codec::new(k, 6 - k).unwrap();
    let layout = StripeLayout {
        size: bytes.len() as u64,
        data_shards: k,
        block_size: 1024,
        frames: FrameFormat::NEWEST,
    };
    let mut files = vec![Vec::new(); 6];
    let mut encoder = codec.encoder(layout);
    let mut emit = |_, frames: Vec<Bytes>| {
        for (file, frame) in files.iter_mut().zip(frames) {
            file.extend_from_slice(&frame);
        }
    };
    encoder.push(bytes, &mut emit).unwrap();
    encoder.finish(&mut emit).unwrap();
    let version = Version { micros, salt: 0 };
    (0..6)
        .map(|slot| {
            let part = PartData {
                number: 1,
                size: bytes.len() as u64,
                md5: String::new(),
                block_size: 1024,
                fragment_id: format!("f{micros}"),
                inline: inline.then(|| Inline::encode(&files[slot])),
                checksum: None,
                key: None,
                frames: layout.frames,
            };
            let record = ObjectRecord {
                deleted: false,
                size: bytes.len() as u64,
                data_shards: k as u8,
                parity_shards: (6 - k) as u8,
                slot: slot as u8,
                parts: vec![part],
                ..ObjectRecord::tombstone(version, false)
            };
            let file = match inline {
                true => Bytes::new(),
                false => Bytes::from(std::mem::take(&mut files[slot])),
            };
            (record, file)
        })
        .collect()
}
