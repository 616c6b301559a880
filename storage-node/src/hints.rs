//! Hinted handoff. While a holder is down, the gateway sends its share of a write to a substitute
//! node: the fragment files as usual, and the metadata call (commit, part, upload, abort) marked
//! `?hint_for=<holder id>`. The substitute keeps that call durably as a [`Hint`], and a background
//! task hands it over once the holder answers again: first the fragment files, then the call itself,
//! and only then drops its own copies.

use crate::client::{NodeClient, RpcError};
use crate::protocol::{CommitRequest, PartRequest};
use crate::record::frame_number;
use crate::server::stream_fragment;
use crate::store::{Store, StoreError};
use bytes::Bytes;
use erasure::{FrameFormat, StripeLayout};
use placement::NodeInfo;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// How often a node tries to hand its hints over.
const HANDOFF_INTERVAL: Duration = Duration::from_secs(1);
/// Hints read per handoff round, so that a long backlog does not sit in memory at once.
const HANDOFF_BATCH: usize = 256;
/// Time allowed to hand over one fragment file: this much, plus a second per `HANDOFF_MIN_RATE` bytes.
const HANDOFF_SEND_BASE: Duration = Duration::from_secs(30);
const HANDOFF_MIN_RATE: u64 = 4 << 20;

/// A metadata call kept for a holder that was down, with the fragment files it refers to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hint {
    /// Node id of the holder the call was meant for.
    pub target: String,
    pub method: String,
    /// The call's path, without the hint parameter.
    pub path: String,
    /// The call's JSON body.
    pub body: String,
    pub fragments: Vec<HintedFragment>,
}

/// A fragment file this node keeps for the hint's target, under the target's fragment slot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HintedFragment {
    pub id: String,
    pub index: u8,
    pub size: u64,
    pub block_size: u32,
    #[serde(
        default,
        skip_serializing_if = "frame_number::is_first",
        with = "frame_number"
    )]
    pub frames: FrameFormat,
}

#[derive(Debug, thiserror::Error)]
pub enum HintError {
    #[error("{0} {1} cannot be hinted")]
    NotHintable(String, String),
    #[error("hinted body: {0}")]
    Body(String),
}

impl Hint {
    /// The hint for a metadata call; only calls that change a holder's metadata can be hinted.
    pub fn new(target: &str, method: &str, path: &str, body: Bytes) -> Result<Hint, HintError> {
        let mut body =
            String::from_utf8(body.to_vec()).map_err(|e| HintError::Body(e.to_string()))?;
        let parse_error = |e: serde_json::Error| HintError::Body(e.to_string());
        let fragments = match (method, path) {
            ("POST", "/v1/commit") => {
                let mut commit: CommitRequest = serde_json::from_str(&body).map_err(parse_error)?;
                // A conditional write's claim was for the quorum that decided it; the holder never
                // granted it, so the handed-back commit is a plain one.
                if commit.claim.take().is_some() {
                    body = serde_json::to_string(&commit).map_err(parse_error)?;
                }
                let fragment = commit.record.slot;
                commit
                    .record
                    .parts
                    .iter()
                    .filter(|p| p.inline.is_none())
                    .map(|p| HintedFragment::of(p, fragment))
                    .collect()
            }
            ("PUT", "/v1/part") => {
                let part: PartRequest = serde_json::from_str(&body).map_err(parse_error)?;
                let record = &part.record;
                match record.part.inline {
                    Some(_) => Vec::new(),
                    None => vec![HintedFragment::of(&record.part, record.slot)],
                }
            }
            ("PUT", "/v1/upload") => Vec::new(),
            ("DELETE", p) if p.starts_with("/v1/upload/") => Vec::new(),
            _ => return Err(HintError::NotHintable(method.into(), path.into())),
        };
        Ok(Hint {
            target: target.to_string(),
            method: method.to_string(),
            path: path.to_string(),
            body,
            fragments,
        })
    }

    /// What the original call answers, so that the gateway sees a substitute answer as the holder
    /// would have.
    pub fn reply(&self) -> &'static str {
        match self.path.as_str() {
            "/v1/commit" | "/v1/part" => "true",
            _ => "",
        }
    }
}

impl HintedFragment {
    fn of(part: &crate::record::PartData, index: u8) -> HintedFragment {
        HintedFragment {
            id: part.fragment_id.clone(),
            index,
            size: part.size,
            block_size: part.block_size,
            frames: part.frames,
        }
    }
}

/// Hands hints over for as long as the node runs.
pub async fn hand_off_forever(
    store: Arc<Store>,
    client: NodeClient,
    nodes: Vec<NodeInfo>,
    data_shards: usize,
) {
    loop {
        tokio::time::sleep(HANDOFF_INTERVAL).await;
        if let Err(e) = hand_off(&store, &client, &nodes, data_shards).await {
            tracing::warn!(error = %e, "hinted handoff round failed");
        }
    }
}

/// One round: every pending hint whose target answers is delivered, oldest first. A target that
/// fails is skipped for the rest of the round, so that its later hints keep their order.
async fn hand_off(
    store: &Arc<Store>,
    client: &NodeClient,
    nodes: &[NodeInfo],
    data_shards: usize,
) -> Result<(), StoreError> {
    let hints = {
        let store = store.clone();
        run_blocking(move || store.hints(HANDOFF_BATCH)).await?
    };
    let mut failing = HashSet::new();
    for (key, hint) in hints {
        if failing.contains(&hint.target) {
            continue;
        }
        let Some(target) = nodes.iter().find(|n| n.id == hint.target) else {
            // Not in this node's view of the cluster: keep it for a node that knows the target.
            failing.insert(hint.target.clone());
            continue;
        };
        let outcome = deliver(store, client, &target.addr, &hint, data_shards).await;
        // A target that refuses the call itself (a 4xx: say, a conditional write's claim that
        // expired) will refuse it every time: the hint is dropped rather than blocking the rest.
        let refused = matches!(&outcome, Err(RpcError::Status(s, _)) if s.is_client_error());
        match outcome {
            Err(e) if refused => {
                tracing::warn!(target = %hint.target, path = %hint.path, error = %e, "hint refused by its holder, dropped");
                let store = store.clone();
                run_blocking(move || drop_hint(&store, &key, &hint)).await?;
            }
            Ok(()) => {
                tracing::info!(target = %hint.target, path = %hint.path, "hint handed over");
                let store = store.clone();
                run_blocking(move || drop_hint(&store, &key, &hint)).await?;
            }
            Err(e) => {
                tracing::debug!(target = %hint.target, error = %e, "hint not handed over yet");
                failing.insert(hint.target.clone());
            }
        }
    }
    Ok(())
}

/// Forgets a hint and this node's copies of its fragment files.
fn drop_hint(store: &Store, key: &[u8], hint: &Hint) -> Result<(), StoreError> {
    for f in &hint.fragments {
        store.remove_fragment(&f.id, f.index)?;
    }
    store.remove_hint(key, &hint.target)
}

/// Sends the hint's fragment files, then its call. A fragment file already gone was handed over
/// with an earlier hint (a part's fragment, then the upload's completion that names it again).
async fn deliver(
    store: &Arc<Store>,
    client: &NodeClient,
    addr: &str,
    hint: &Hint,
    data_shards: usize,
) -> Result<(), RpcError> {
    client.health(addr).await?;
    for f in &hint.fragments {
        if !store.fragment_path(&f.id, f.index).exists() {
            continue;
        }
        let layout = StripeLayout {
            size: f.size,
            data_shards,
            block_size: f.block_size as usize,
            frames: f.frames,
        };
        let len = layout.fragment_len();
        let body = stream_fragment(store.clone(), f.id.clone(), f.index, 0, len, Bytes::new());
        // A target that stops taking bytes must not hold up every other hint forever.
        let limit = HANDOFF_SEND_BASE + Duration::from_secs(len / HANDOFF_MIN_RATE);
        tokio::time::timeout(
            limit,
            client.put_fragment(addr, &f.id, f.index, layout, body),
        )
        .await
        .map_err(|_| RpcError::Timeout)??;
    }
    client
        .replay(addr, &hint.method, &hint.path, hint.body.clone())
        .await
}

async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Io(std::io::Error::other(e)))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{fragment_id, Inline, ObjectRecord, PartData, Version};

    fn part(inline: bool) -> PartData {
        PartData {
            number: 1,
            size: 1000,
            md5: "00".into(),
            block_size: 256,
            fragment_id: fragment_id(&[b"k"]),
            inline: inline.then(|| Inline::encode(&[1, 2, 3])),
            checksum: None,
            key: None,
            frames: FrameFormat::PositionLast,
        }
    }

    #[test]
    fn a_commit_hint_names_the_file_fragments_of_its_record() {
        let mut record = ObjectRecord::tombstone(Version::now(), false);
        record.deleted = false;
        record.slot = 4;
        record.parts = vec![part(false), part(true)];
        let commit = CommitRequest {
            bucket: [1; 16],
            key: "k".into(),
            record,
            upload_id: None,
            claim: None,
            replicate: None,
        };
        let body = Bytes::from(serde_json::to_vec(&commit).unwrap());
        let hint = Hint::new("z1-n1", "POST", "/v1/commit", body).unwrap();
        assert_eq!(hint.fragments.len(), 1);
        assert_eq!(hint.fragments[0].index, 4);
        assert_eq!(hint.fragments[0].frames, FrameFormat::PositionLast);
        let kept: Hint = serde_json::from_str(&serde_json::to_string(&hint).unwrap()).unwrap();
        assert_eq!(kept.fragments, hint.fragments);
        assert_eq!(hint.reply(), "true");
        assert!(Hint::new("z1-n1", "PUT", "/v1/fragment/x/1", Bytes::new()).is_err());
        assert!(Hint::new("z1-n1", "POST", "/v1/commit", Bytes::from("{")).is_err());
    }
}
