//! Read repair: rebuild, from k good fragments, the fragments and records of holders that are
//! stale, missing a fragment, or hold a corrupt one, and commit them there. Healing a node runs
//! the same repair for every object the node should hold.

use crate::ops::cluster::{Cluster, Holder};
use crate::ops::error::OpError;
use crate::ops::fanout::{self, FanOut};
use crate::ops::fetch::{self, Fetcher, PartReader};
use crate::ops::lookup::{Found, Source};
use bytes::Bytes;
use erasure::Codec;
use futures::future::join_all;
use node_rpc::protocol::CommitRequest;
use node_rpc::record::{Inline, ObjectRecord, PartData};

/// Repairs the given fragment slots of `found`'s version on their holders. Returns the bytes of
/// fragment files rewritten.
pub async fn repair(cluster: &Cluster, found: &Found, slots: &[u8]) -> Result<u64, OpError> {
    let target = &found.target;
    let holders = cluster.holders(&target.bucket, &target.key);
    let wanted: Vec<usize> = slots.iter().map(|s| *s as usize).collect();
    let mut inline: Vec<Vec<Option<Vec<u8>>>> = vec![Vec::new(); found.record.parts.len()];
    let mut rewritten = 0u64;
    for (index, rebuilt_part) in inline.iter_mut().enumerate() {
        // Inside the loop: a delete marker has no parts, and no layout.
        let codec = &found.codec()?;
        let reader = PartReader::new(cluster, codec, found, index);
        let is_inline = found.sources.iter().any(|s| {
            s.record
                .parts
                .get(index)
                .is_some_and(|p| p.inline.is_some())
        });
        let stripes = reader.layout.stripe_count();
        if is_inline {
            let mut rebuilt = vec![Vec::new(); wanted.len()];
            if stripes > 0 {
                let mut fetcher = reader.fetcher(stripes - 1);
                for stripe in 0..stripes {
                    let frames =
                        rebuild_stripe(codec, &reader, &mut fetcher, stripe, &wanted).await?;
                    for (out, frame) in rebuilt.iter_mut().zip(frames) {
                        out.extend_from_slice(&frame);
                    }
                }
            }
            *rebuilt_part = rebuilt.into_iter().map(Some).collect();
        } else {
            rewritten +=
                stream_part(cluster, codec, &reader, found, index, &holders, &wanted).await?;
            *rebuilt_part = vec![None; wanted.len()];
        }
    }
    let commits = wanted.iter().enumerate().map(|(i, &slot)| {
        let mut record = found.record.clone();
        record.slot = slot as u8;
        for (part, rebuilt) in record.parts.iter_mut().zip(&inline) {
            part.inline = rebuilt[i].as_deref().map(Inline::encode);
        }
        let request = CommitRequest {
            bucket: target.bucket,
            key: target.key.clone(),
            record,
            upload_id: None,
            claim: None,
            replicate: None,
        };
        let addr = holders[slot].node.addr.clone();
        async move { cluster.client.commit(&addr, &request).await }
    });
    for answer in join_all(commits).await {
        answer?;
    }
    Ok(rewritten)
}

/// The record a holder that has the version's bytes (its fragment slot and `parts`) but missed a
/// later revision of it (tags, an Object Lock change) should have: the newest, with its own share.
pub fn revised_for(newest: &ObjectRecord, behind: &ObjectRecord) -> ObjectRecord {
    ObjectRecord {
        slot: behind.slot,
        parts: behind.parts.clone(),
        ..newest.clone()
    }
}

/// Commits the newest revision of `found`'s version to the sources that answered with an older
/// one: their bytes are right, only their record is behind. Returns how many were revised.
pub async fn revise_sources(cluster: &Cluster, found: &Found) -> usize {
    let commits = behind(found).map(|source| {
        let request = CommitRequest {
            bucket: found.target.bucket,
            key: found.target.key.clone(),
            record: revised_for(&found.record, &source.record),
            upload_id: None,
            claim: None,
            replicate: None,
        };
        async move { cluster.client.commit(&source.addr, &request).await }
    });
    join_all(commits)
        .await
        .into_iter()
        .filter(Result::is_ok)
        .count()
}

/// The sources of `found` whose record is an older revision of its version.
pub fn behind(found: &Found) -> impl Iterator<Item = &Source> {
    (found.sources.iter()).filter(|s| s.record.revision < found.record.revision)
}

async fn rebuild_stripe(
    codec: &Codec,
    reader: &PartReader<'_>,
    fetcher: &mut Fetcher<'_, '_>,
    stripe: u64,
    wanted: &[usize],
) -> Result<Vec<Vec<u8>>, OpError> {
    let frames = fetch::joined(&fetcher.frames(stripe).await?);
    let refs: Vec<Option<&[u8]>> = frames.iter().map(|f| f.as_deref()).collect();
    codec
        .rebuild_frames(&reader.layout, stripe, &refs, wanted)
        .map_err(|e| OpError::Unavailable(e.to_string()))
}

/// Streams the rebuilt fragment of one file part to each wanted holder.
async fn stream_part(
    cluster: &Cluster,
    codec: &Codec,
    reader: &PartReader<'_>,
    found: &Found,
    index: usize,
    holders: &[Holder<'_>],
    wanted: &[usize],
) -> Result<u64, OpError> {
    let part = &found.record.parts[index];
    let layout = reader.layout;
    let targets: Vec<(&str, u8)> = wanted
        .iter()
        .map(|&slot| (holders[slot].node.addr.as_str(), slot as u8))
        .collect();
    let feed = |mut fanout: FanOut| async move {
        let stripes = layout.stripe_count();
        if stripes > 0 {
            let mut fetcher = reader.fetcher(stripes - 1);
            for stripe in 0..stripes {
                let frames = rebuild_stripe(codec, reader, &mut fetcher, stripe, wanted).await?;
                fanout
                    .send(frames.into_iter().map(Bytes::from).collect())
                    .await;
            }
        }
        fanout.finish();
        Ok(())
    };
    let (fed, outcomes) = fanout::upload(cluster, &targets, &part.fragment_id, layout, feed).await;
    fed?;
    for outcome in outcomes {
        outcome?;
    }
    Ok(layout.fragment_len() * wanted.len() as u64)
}

/// A part as the holder of fragment `slot` records it, from the slots' shares of it
/// (`shares[i]`: slot i's, when known; all of one version): a part kept in files names the same
/// files everywhere, while an inline part's fragment is rebuilt from k others. `None` when no
/// share is known, or too few inline fragments are. This is what a substitute keeping a down holder's
/// share is sent when that share was not written while the holder was down.
pub fn part_for_slot(codec: &Codec, shares: &[Option<&PartData>], slot: u8) -> Option<PartData> {
    if let Some(Some(own)) = shares.get(slot as usize) {
        return Some((*own).clone());
    }
    let any = *shares.iter().flatten().next()?;
    if any.inline.is_none() {
        return Some(any.clone());
    }
    let layout = any.layout(codec.data_shards());
    let decoded: Vec<Option<Vec<u8>>> = shares
        .iter()
        .map(|c| c.and_then(|p| p.inline.as_ref()?.decode().ok()))
        .collect();
    let fragments: Vec<Option<&[u8]>> = decoded.iter().map(Option::as_deref).collect();
    let inline = codec
        .rebuild_fragment(&layout, &fragments, slot as usize)
        .ok()?;
    Some(PartData {
        inline: Some(Inline::encode(&inline)),
        ..any.clone()
    })
}

/// An object record as the holder of fragment `slot` keeps it, from the holders' records of one
/// version (`records[i]`: slot i's, when known); see `part_for_slot`.
pub fn record_for_slot(records: &[Option<ObjectRecord>], slot: u8) -> Option<ObjectRecord> {
    let any = records.iter().flatten().next()?;
    let codec = &any.codec().ok()?;
    let parts = (0..any.parts.len())
        .map(|i| {
            let shares: Vec<Option<&PartData>> = records
                .iter()
                .map(|r| r.as_ref().and_then(|r| r.parts.get(i)))
                .collect();
            part_for_slot(codec, &shares, slot)
        })
        .collect::<Option<Vec<_>>>()?;
    Some(ObjectRecord {
        slot,
        parts,
        ..any.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing;

    /// Each slot's share of one part of `version` (from `testing::version`).
    fn shares(version: &[(ObjectRecord, bytes::Bytes)]) -> Vec<PartData> {
        version.iter().map(|(r, _)| r.parts[0].clone()).collect()
    }

    #[test]
    fn an_inline_share_is_rebuilt_from_k_others() {
        let version = testing::version(10, 4, b"a small object kept in its records", true);
        let all = shares(&version);
        let codec = Codec::new(4, 2).unwrap();
        // The holder of slot 1 is down: four other shares rebuild its own.
        let known: Vec<Option<&PartData>> = (0..6)
            .map(|i| (i != 1 && i != 5).then(|| &all[i]))
            .collect();
        let rebuilt = part_for_slot(&codec, &known, 1).unwrap();
        assert_eq!(rebuilt, all[1]);
        // A share that is known is taken as it is.
        assert_eq!(part_for_slot(&codec, &known, 0).unwrap(), all[0]);
        // Three shares are not enough.
        let three: Vec<Option<&PartData>> = (0..6).map(|i| (i < 3).then(|| &all[i])).collect();
        assert!(part_for_slot(&codec, &three, 4).is_none());
    }

    #[test]
    fn a_part_in_files_is_the_same_for_every_slot() {
        let version = testing::version(10, 4, &[3; 9000], false);
        let all = shares(&version);
        let codec = Codec::new(4, 2).unwrap();
        let one: Vec<Option<&PartData>> = (0..6).map(|i| (i == 2).then(|| &all[i])).collect();
        assert_eq!(part_for_slot(&codec, &one, 5).unwrap(), all[5]);
        let records: Vec<Option<ObjectRecord>> = (version.iter().enumerate())
            .map(|(i, (r, _))| (i == 2).then(|| r.clone()))
            .collect();
        let record = record_for_slot(&records, 5).unwrap();
        assert_eq!((record.slot, &record.parts), (5, &version[5].0.parts));
        assert!(
            record_for_slot(&vec![None; 6], 5).is_none(),
            "no share known"
        );
    }
}
