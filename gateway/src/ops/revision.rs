//! Changes that keep an object version (its tags, its Object Lock retention and legal hold): the
//! version committed again, changed, with its next revision.

use crate::ops::cluster::Cluster;
use crate::ops::commit::commit_record;
use crate::ops::error::OpError;
use crate::ops::repair::record_for_slot;
use futures::future::join_all;
use node_rpc::protocol::Lookup;
use node_rpc::record::{next_revision, BucketRecord, ObjectRecord, Version, VersionRef};

/// Commits the version (`which`; `None`: the current one) again, changed by `edit`, with its next
/// revision, to the holders that have it. `edit` gets the newest revision's record and may refuse
/// the change; every holder then gets that record with its own fragment slot and parts, so that a
/// holder that missed an earlier revision does not bring back what that revision changed.
pub async fn revise_version(
    cluster: &Cluster,
    bucket: &BucketRecord,
    key: &str,
    which: Option<VersionRef>,
    edit: impl FnOnce(&mut ObjectRecord) -> Result<(), OpError>,
) -> Result<(), OpError> {
    let holders = cluster.holders(&bucket.id, key);
    let answers: Vec<Option<Lookup>> = join_all(
        holders
            .iter()
            .map(|h| cluster.client.object(&h.node.addr, &bucket.id, key, which)),
    )
    .await
    .into_iter()
    .map(Result::ok)
    .collect();
    let purged: Vec<Version> = answers
        .iter()
        .flatten()
        .flat_map(|l| l.purged.clone())
        .collect();
    let answers: Vec<Option<Option<ObjectRecord>>> = answers
        .into_iter()
        .map(|a| a.map(|l| l.record.filter(|r| !purged.contains(&r.version))))
        .collect();
    let answered = answers.iter().filter(|a| a.is_some()).count();
    cluster
        .read_quorum()
        .require(answered, holders.len(), "holders answered for the object")?;
    let newest = answers
        .iter()
        .flatten()
        .flatten()
        .max_by_key(|r| r.stamp())
        .cloned();
    let version = newest.as_ref().map(|r| r.version);
    let current: Vec<Option<ObjectRecord>> = answers
        .into_iter()
        .map(|a| a.flatten().filter(|r| Some(r.version) == version))
        .collect();
    let mut revised = match newest {
        None if which.is_some() => return Err(OpError::NoSuchVersion),
        None => return Err(OpError::NoSuchKey),
        Some(r) if r.deleted => return Err(OpError::MarkerUnchanged),
        Some(r) => r,
    };
    edit(&mut revised)?;
    revised.revision = next_revision(revised.revision);
    // A substitute keeping a down holder's slot gets that slot's record, rebuilt from the others.
    let targets = cluster.write_holders(&bucket.id, key);
    let records: Vec<Option<ObjectRecord>> = targets
        .iter()
        .map(|t| match t.hint_for {
            None => current[t.slot as usize].clone(),
            Some(_) => record_for_slot(&current, t.slot),
        })
        .collect();
    let has: Vec<bool> = records.iter().map(Option::is_some).collect();
    let record_for = |slot: u8| {
        let record = targets
            .iter()
            .zip(&records)
            .find_map(|(t, r)| (t.slot == slot).then_some(r.as_ref()))
            .flatten()
            .expect("commits go only to holders with the version");
        ObjectRecord {
            slot: record.slot,
            parts: record.parts.clone(),
            ..revised.clone()
        }
    };
    commit_record(cluster, bucket, key, &targets, &has, record_for, None, None).await
}
