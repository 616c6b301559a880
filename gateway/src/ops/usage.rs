//! How much a bucket holds: its objects, versions and their bytes, summed over the ring's shards
//! from the nodes' per-shard counts (`Store::usage`). Each shard is counted once, from the
//! holder that has seen the most of its versions (a holder that missed writes counts fewer), so
//! the sum is what a full listing would find, without listing.
//!
//! It costs every node a scan of its share of the bucket's records (about a million records a
//! second per node), so it is for operators' views, not for every request.

use crate::ops::cluster::Cluster;
use node_rpc::protocol::ShardUsage;
use node_rpc::record::BucketId;
use placement::ShardId;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BucketUsage {
    /// Current versions that are not delete markers, and their bytes.
    pub objects: u64,
    pub bytes: u64,
    /// Every version, delete markers included, and the bytes of those that are not markers.
    pub versions: u64,
    pub version_bytes: u64,
    /// Shards none of whose holders answered: the counts leave out whatever those hold.
    pub shards_unanswered: u32,
}

pub async fn bucket_usage(cluster: &Cluster, bucket: &BucketId) -> BucketUsage {
    let nodes = cluster.all_nodes();
    let answers = cluster
        .on_all(&nodes, |n| cluster.client.usage(&n.addr, bucket))
        .await;
    let answers: Vec<Option<BTreeMap<u32, ShardUsage>>> =
        answers.into_iter().map(Result::ok).collect();
    sum_shards(
        cluster.layout.shard_count(),
        |shard| cluster.layout.holders(ShardId(shard)),
        &answers,
    )
}

/// The sum over `shards` of the fullest answer among each shard's holders (`holders_of`, as
/// indexes into `answers`; `None` for a node that did not answer).
fn sum_shards<'a>(
    shards: u32,
    holders_of: impl Fn(u32) -> &'a [usize],
    answers: &[Option<BTreeMap<u32, ShardUsage>>],
) -> BucketUsage {
    let mut total = BucketUsage::default();
    for shard in 0..shards {
        let heard: Vec<ShardUsage> = holders_of(shard)
            .iter()
            .filter_map(|&h| answers.get(h)?.as_ref())
            .map(|counts| counts.get(&shard).copied().unwrap_or_default())
            .collect();
        let Some(fullest) = heard.iter().max_by_key(|u| u.versions) else {
            total.shards_unanswered += 1;
            continue;
        };
        total.objects += fullest.objects;
        total.bytes += fullest.bytes;
        total.versions += fullest.versions;
        total.version_bytes += fullest.version_bytes;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(objects: u64, versions: u64) -> ShardUsage {
        ShardUsage {
            objects,
            bytes: objects * 10,
            versions,
            version_bytes: versions * 10,
        }
    }

    #[test]
    fn each_shard_counts_once_from_its_fullest_holder() {
        // Two shards; shard 0 on nodes 0 and 1, shard 1 on nodes 1 and 2.
        let holders: [&[usize]; 2] = [&[0, 1], &[1, 2]];
        let answers = vec![
            Some(BTreeMap::from([(0, usage(3, 4))])),
            // Node 1 missed a write of shard 0, and holds shard 1's two objects.
            Some(BTreeMap::from([(0, usage(2, 3)), (1, usage(2, 2))])),
            Some(BTreeMap::from([(1, usage(2, 2))])),
        ];
        let total = sum_shards(2, |s| holders[s as usize], &answers);
        assert_eq!(
            total,
            BucketUsage {
                objects: 5,
                bytes: 50,
                versions: 6,
                version_bytes: 60,
                shards_unanswered: 0
            }
        );
    }

    #[test]
    fn a_shard_whose_holders_are_all_down_is_reported() {
        let holders: [&[usize]; 2] = [&[0, 1], &[1, 2]];
        let answers = vec![None, None, Some(BTreeMap::from([(1, usage(1, 1))]))];
        let total = sum_shards(2, |s| holders[s as usize], &answers);
        assert_eq!(total.shards_unanswered, 1);
        assert_eq!(total.objects, 1);
        // A holder that answered without the shard holds nothing of it.
        let answers = vec![Some(BTreeMap::new()), None, None];
        let total = sum_shards(2, |s| holders[s as usize], &answers);
        assert_eq!((total.shards_unanswered, total.objects), (1, 0));
    }
}
