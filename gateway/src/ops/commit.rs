//! Committing a record to a key's holders, and conditional writes' check and claim, which make
//! "only if the key is still as it was" atomic with the commit.

use crate::ops::cluster::Cluster;
use crate::ops::cluster::Holder;
use crate::ops::error::OpError;
use crate::ops::lookup::{lookup, Ask};
use crate::s3::error::S3Error;
use futures::future::join_all;
use node_rpc::protocol::{ClaimAnswer, ClaimRequest, CommitRequest};
use node_rpc::record::{BucketRecord, Encryption, ObjectRecord, Version};
use node_rpc::RpcError;
use std::future::Future;

/// What a conditional write checked: the key's newest version at the time (`None`: it had none).
pub struct Precondition {
    expected: Option<Version>,
}

/// Conditional writes: `If-None-Match: *` (412 when the key has a live version) and
/// `If-Match: "etag"` (404 when it has none, 412 when its ETag differs), checked against a read
/// quorum of the holders before the data is sent, so that a write bound to fail sends nothing.
/// The check is made atomic with the commit by `claim`. `Ok(None)`: the write is unconditional.
pub async fn check_conditions(
    cluster: &Cluster,
    bucket: &BucketRecord,
    key: &str,
    if_match: Option<&str>,
    if_none_match: Option<&str>,
) -> Result<Option<Precondition>, OpError> {
    if if_match.is_none() && if_none_match.is_none() {
        return Ok(None);
    }
    if if_none_match.is_some_and(|v| v.trim() != "*") {
        let unsupported = "If-None-Match with a value other than * on a write";
        return Err(S3Error::NotImplemented(unsupported).into());
    }
    let newest = lookup(cluster, &bucket.id, key, None, Ask::Quorum).await?;
    let expected = newest.as_ref().map(|found| found.record.version);
    let current = newest
        .filter(|found| !found.record.deleted)
        .map(|found| found.record.etag);
    if if_none_match.is_some() && current.is_some() {
        return Err(OpError::PreconditionFailed);
    }
    if let Some(list) = if_match {
        let etag = current.ok_or(OpError::NoSuchKey)?;
        let matches = list
            .split(',')
            .map(|t| t.trim().trim_matches('"'))
            .any(|t| t == "*" || t == etag);
        if !matches {
            return Err(OpError::PreconditionFailed);
        }
    }
    Ok(Some(Precondition { expected }))
}

/// A conditional write's claim on its key: granted by the holders marked in `granted`.
pub struct Claimed {
    token: String,
    granted: Vec<bool>,
}

/// Claims the key on the holders that stored the new data, for one conditional write: a holder
/// grants a claim while no other writer holds one and its current version is not newer than the
/// one the condition was checked against. The first holder that answers is asked alone, before
/// any other: of concurrent writers only the one it grants goes on, so they cannot split the
/// holders between them and all fail. Without a write quorum of grants the claims are released:
/// 412 when a holder has a newer version (the condition no longer holds), 409 when another
/// conditional write holds the key.
pub async fn claim(
    cluster: &Cluster,
    bucket: &BucketRecord,
    key: &str,
    holders: &[Holder<'_>],
    stored: &[bool],
    precondition: &Precondition,
) -> Result<Claimed, OpError> {
    let client = &cluster.client;
    let request = ClaimRequest {
        bucket: bucket.id,
        key: key.to_string(),
        token: hex::encode(rand::random::<[u8; 16]>()),
        expected: precondition.expected,
    };
    let candidates: Vec<usize> = (0..holders.len()).filter(|&i| stored[i]).collect();
    let mut answers: Vec<Option<ClaimAnswer>> = vec![None; holders.len()];
    let mut rest = candidates.iter();
    for &i in rest.by_ref() {
        if let Ok(answer) = client.claim(&holders[i].node.addr, &request).await {
            answers[i] = Some(answer);
            break;
        }
    }
    if answers.iter().flatten().all(|a| *a == ClaimAnswer::Granted) {
        let others: Vec<usize> = rest.copied().collect();
        let replies = join_all(
            others
                .iter()
                .map(|&i| client.claim(&holders[i].node.addr, &request)),
        )
        .await;
        for (i, reply) in others.into_iter().zip(replies) {
            answers[i] = reply.ok();
        }
    }
    let granted: Vec<bool> = answers
        .iter()
        .map(|a| *a == Some(ClaimAnswer::Granted))
        .collect();
    let count = granted.iter().filter(|g| **g).count();
    let quorum = cluster
        .write_quorum()
        .require(count, holders.len(), "holders granted the claim");
    let refused = if answers.contains(&Some(ClaimAnswer::Changed)) {
        OpError::PreconditionFailed
    } else if answers.contains(&Some(ClaimAnswer::Busy)) {
        OpError::Conflict
    } else if let Err(e) = quorum {
        e
    } else {
        return Ok(Claimed {
            token: request.token,
            granted,
        });
    };
    let releases = holders
        .iter()
        .zip(&granted)
        .filter(|(_, g)| **g)
        .map(|(h, _)| client.release(&h.node.addr, &request));
    join_all(releases).await;
    Err(refused)
}

/// Commits a record to every holder that stored its data, each with its own fragment index; a
/// conditional write commits only where its claim was granted, and needs a write quorum of them
/// to apply it (a holder refuses once a plain write has changed the key since the claim).
#[allow(clippy::too_many_arguments)]
pub async fn commit_record<'a>(
    cluster: &Cluster,
    bucket: &BucketRecord,
    key: &str,
    holders: &[Holder<'a>],
    stored: &[bool],
    record_for: impl Fn(u8) -> ObjectRecord,
    upload_id: Option<&str>,
    claimed: Option<&Claimed>,
) -> Result<(), OpError> {
    let commit = |h: Holder<'a>| {
        let client = cluster.client_for(&h);
        let mut record = record_for(h.slot);
        // A replica is this region's copy of a peer's change: never sent on again. An object
        // under a customer's key (SSE-C) cannot be read without it, and the key is not kept.
        let customer_key = matches!(record.encryption, Some(Encryption::Customer { .. }));
        let replicate = match record.replica || customer_key {
            true => None,
            false => cluster.replicate(bucket),
        };
        record.queued = replicate.is_some();
        let request = CommitRequest {
            bucket: bucket.id,
            key: key.to_string(),
            record,
            upload_id: upload_id.map(str::to_string),
            claim: claimed.map(|c| c.token.clone()),
            replicate,
        };
        async move { client.commit(&h.node.addr, &request).await }
    };
    let Some(claimed) = claimed else {
        // A plain commit answers `false` when the holder already has a newer version: this one
        // is then overwritten there, which counts toward the quorum like applying it.
        let plain = |h| {
            let answer = commit(h);
            async move { answer.await.map(|_applied| ()) }
        };
        return commit_quorum(cluster, holders, stored, plain).await;
    };
    let asked: Vec<Holder<'a>> = holders
        .iter()
        .zip(&claimed.granted)
        .filter(|(_, g)| **g)
        .map(|(h, _)| *h)
        .collect();
    let answers = join_all(asked.iter().map(|h| commit(*h))).await;
    for (holder, answer) in asked.iter().zip(&answers) {
        if matches!(answer, Ok(true)) {
            cluster.note_hinted(holder);
        }
    }
    let applied = answers.iter().filter(|a| matches!(a, Ok(true))).count();
    let quorum = cluster.write_quorum();
    if !quorum.met(applied) && answers.iter().any(|a| matches!(a, Ok(false))) {
        return Err(OpError::Conflict);
    }
    quorum.require(
        applied,
        answers.len(),
        "holders applied the conditional write",
    )
}

/// Commits to the given holders (those that stored the data) and requires a write quorum. With
/// fewer than W holders able to take it, nothing is sent, so a refused write leaves nothing behind.
pub async fn commit_quorum<'a, F, Fut>(
    cluster: &Cluster,
    holders: &[Holder<'a>],
    stored: &[bool],
    commit: F,
) -> Result<(), OpError>
where
    F: Fn(Holder<'a>) -> Fut,
    Fut: Future<Output = Result<(), RpcError>>,
{
    let quorum = cluster.write_quorum();
    let available = stored.iter().filter(|s| **s).count();
    quorum.require(available, holders.len(), "holders can take the write")?;
    // Boxed: a commit's future is kilobytes, and collecting them unboxed moved each one several
    // times as the list grew (about a third of the gateway's `memmove` under 4 KiB PUTs).
    let calls = holders
        .iter()
        .zip(stored)
        .filter(|(_, s)| **s)
        .map(|(h, _)| Box::pin(commit(*h)));
    let answers = join_all(calls).await;
    let mut outcomes = answers.iter();
    for (holder, stored) in holders.iter().zip(stored) {
        // Only holders that stored the data were asked to commit, in order.
        let outcome = if *stored { outcomes.next() } else { None };
        match outcome {
            Some(Ok(_)) => cluster.note_hinted(holder),
            _ => cluster.note_missed(holder),
        }
    }
    quorum.tally(&answers, "holders committed")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{self, Nodes, BUCKET, KEY};
    use std::sync::{Arc, Mutex};

    /// Commits of the key to its holders where `stored` says, failing at the holders of `fails`;
    /// the outcome, and the slots asked to commit.
    async fn commit(
        cluster: &Cluster,
        stored: [bool; 6],
        fails: &[u8],
    ) -> (Result<(), OpError>, Vec<u8>) {
        let holders = cluster.holders(&BUCKET, KEY);
        let asked = Mutex::new(Vec::new());
        let outcome = commit_quorum(cluster, &holders, &stored, |h| {
            asked.lock().unwrap().push(h.slot);
            let fail = fails.contains(&h.slot);
            async move {
                if fail {
                    Err(RpcError::Timeout)
                } else {
                    Ok(())
                }
            }
        })
        .await;
        (outcome, asked.into_inner().unwrap())
    }

    fn missed(cluster: &Cluster) -> Vec<u8> {
        let holders = cluster.holders(&BUCKET, KEY);
        (holders.iter())
            .filter(|h| {
                cluster
                    .liveness
                    .needs_heal(cluster.node_index(&h.node.id).unwrap())
            })
            .map(|h| h.slot)
            .collect()
    }

    #[tokio::test]
    async fn a_write_fewer_than_w_holders_stored_commits_nowhere() {
        let cluster = testing::cluster(Arc::new(Nodes::default()));
        let (outcome, asked) = commit(&cluster, [true, true, true, true, false, false], &[]).await;
        match outcome {
            Err(OpError::Unavailable(why)) => {
                assert_eq!(why, "4 of 6 holders can take the write; 5 needed")
            }
            other => panic!("{other:?}"),
        }
        assert!(asked.is_empty(), "nothing sent: {asked:?}");
    }

    #[tokio::test]
    async fn w_commits_acknowledge_and_the_holders_left_out_are_healed_later() {
        let cluster = testing::cluster(Arc::new(Nodes::default()));
        let (outcome, asked) = commit(&cluster, [true, true, true, true, true, false], &[]).await;
        assert!(outcome.is_ok());
        assert_eq!(asked, [0, 1, 2, 3, 4], "only the holders that stored it");
        assert_eq!(missed(&cluster), [5]);

        let cluster = testing::cluster(Arc::new(Nodes::default()));
        let (outcome, _) = commit(&cluster, [true; 6], &[2, 4]).await;
        match outcome {
            Err(OpError::Unavailable(why)) => {
                assert!(
                    why.starts_with("4 of 6 holders committed; 5 needed"),
                    "{why}"
                )
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            missed(&cluster),
            [2, 4],
            "an unacknowledged write is healed too"
        );
    }

    #[test]
    fn a_holder_left_out_of_a_write_is_noted_once_the_write_is_over() {
        let cluster = testing::cluster(Arc::new(Nodes::default()));
        let live = &cluster.liveness;
        let down = cluster.node_index(&cluster.holders(&BUCKET, KEY)[2].node.id);
        let down = down.unwrap();
        live.set_up(down, false);
        let targets = cluster.write_holders(&BUCKET, KEY);
        assert_eq!(targets.len(), 5, "no substitute among six nodes");
        assert!(targets.iter().all(|h| h.slot != 2));
        // The node came back and a heal began (and compared) while the write was in flight.
        live.set_up(down, true);
        assert!(!live.take_missed(down));
        drop(targets);
        assert!(live.needs_heal(down), "healed again, after the write");
        assert!(live.take_missed(down) && !live.needs_heal(down));
        drop(cluster.write_holders(&BUCKET, KEY));
        assert!(!live.needs_heal(down), "a write with every holder");
    }
}
