//! Consistent-hash ring of weighted virtual points.
//!
//! Each node owns `weight` points scattered over the u64 circle, so adding or
//! removing a node only disturbs the arcs next to its own points.

use crate::NodeInfo;

/// Sorted virtual points; each entry is (position, index into the node list).
#[derive(Clone, Debug)]
pub struct Ring {
    points: Vec<(u64, usize)>,
}

impl Ring {
    pub fn new(nodes: &[NodeInfo]) -> Ring {
        let mut points = Vec::new();
        for (idx, node) in nodes.iter().enumerate() {
            for i in 0..node.weight {
                points.push((vnode_point(&node.id, i), idx));
            }
        }
        // Break (astronomically unlikely) position ties by node id, not by
        // input order, so the ring does not depend on how nodes were listed.
        points.sort_unstable_by(|a, b| (a.0, &nodes[a.1].id).cmp(&(b.0, &nodes[b.1].id)));
        Ring { points }
    }

    /// Node indices met walking clockwise from `pos`, once around the circle.
    /// The same node shows up once per virtual point; callers deduplicate.
    pub fn walk(&self, pos: u64) -> impl Iterator<Item = usize> + '_ {
        let start = self.points.partition_point(|&(p, _)| p < pos);
        let (before, after) = self.points.split_at(start);
        after.iter().chain(before).map(|&(_, idx)| idx)
    }
}

/// Position of a node's i-th virtual point. The id is length-prefixed so that
/// ("ab", 1) and ("a", …) can never feed blake3 the same bytes.
fn vnode_point(id: &str, i: u32) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(b"tessera/vnode");
    h.update(&(id.len() as u64).to_le_bytes());
    h.update(id.as_bytes());
    h.update(&i.to_le_bytes());
    truncate(h.finalize())
}

/// Ring position of a shard.
pub fn shard_point(shard: u32) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(b"tessera/shard");
    h.update(&shard.to_le_bytes());
    truncate(h.finalize())
}

pub fn truncate(hash: blake3::Hash) -> u64 {
    let bytes: [u8; 8] = hash.as_bytes()[..8].try_into().expect("blake3 is 32 bytes");
    u64::from_le_bytes(bytes)
}
