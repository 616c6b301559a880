//! The write path: stream an upload through MD5, the client's checksum and the erasure encoder in
//! one pass, fan the frames out to the holders, and commit once a write quorum has them durable.

use crate::ops::cluster::{Cluster, Holder};
use crate::ops::commit::claim;
use crate::ops::commit::commit_record;
use crate::ops::commit::Precondition;
use crate::ops::encryption::{PartCipher, PartSeal, Sse};
use crate::ops::error::OpError;
use crate::ops::fanout;
use crate::ops::fanout::FanOut;
use crate::ops::lookup::version_id;
use crate::ops::quorum::shortfall;
use crate::ops::replica::Replica;
use crate::s3::checksum::{Algorithm, Checked, Digests, Expected, Verified};
use crate::s3::error::S3Error;
use crate::s3::payload::PayloadReader;
use bytes::Bytes;
use erasure::{Codec, StripeLayout};
use futures::future::join_all;
use node_rpc::object_lock::ObjectLock;
use node_rpc::record::{
    fragment_id, Acl, BucketRecord, Encryption, Inline, ObjectRecord, PartData, StoredChecksum,
    Version, VersionRef,
};

/// Where one part goes and how it is cut.
pub struct PartPlan<'a> {
    pub holders: &'a [Holder<'a>],
    pub layout: StripeLayout,
    pub number: u32,
    pub fragment_id: String,
    /// Keep the fragments inside the metadata records rather than in files.
    pub inline: bool,
    /// The part's key, when its object is encrypted: the bytes are encrypted before they are
    /// encoded, after they are hashed (MD5 and checksums are of the plaintext).
    pub seal: Option<PartSeal>,
}

/// A part whose fragments are durable on the holders marked in `stored`.
pub struct StoredPart {
    pub data: PartData,
    /// Fragment i, for an inline part.
    pub inline: Option<Vec<Inline>>,
    pub stored: Vec<bool>,
    pub verified: Verified,
}

impl StoredPart {
    /// The part as the holder of `slot` records it (with its own inline fragment).
    pub fn for_holder(&self, slot: usize) -> PartData {
        let mut data = self.data.clone();
        data.inline = self.inline.as_ref().map(|f| f[slot].clone());
        data
    }
}

/// Reads the whole payload, verifies it against what the client claimed, and stores its fragments.
/// Nothing is left on any holder when the payload fails verification.
pub async fn store_part(
    cluster: &Cluster,
    codec: &Codec,
    plan: PartPlan<'_>,
    payload: &mut PayloadReader,
    expected: &Expected,
) -> Result<StoredPart, OpError> {
    cluster.write_quorum().require(
        plan.holders.len(),
        cluster.width(),
        "holders can take the write",
    )?;
    let algorithm = expected.algorithm();
    let (inline, stored, verified) = if plan.inline {
        let (fragments, verified) =
            encode_inline(codec, &plan, payload, expected, algorithm).await?;
        let fragments = fragments.iter().map(|f| Inline::encode(f)).collect();
        (Some(fragments), vec![true; plan.holders.len()], verified)
    } else {
        let (stored, verified) =
            stream_to_holders(cluster, codec, &plan, payload, expected, algorithm).await?;
        (None, stored, verified)
    };
    let (md5, key) = match plan.seal {
        Some(seal) => (seal.etag(&verified.md5), Some(seal.wrapped)),
        None => (hex::encode(verified.md5), None),
    };
    Ok(StoredPart {
        data: PartData {
            number: plan.number,
            size: plan.layout.size,
            md5,
            block_size: plan.layout.block_size as u32,
            fragment_id: plan.fragment_id,
            inline: None,
            checksum: verified.checksum.clone(),
            key,
            frames: plan.layout.frames,
        },
        inline,
        stored,
        verified,
    })
}

async fn encode_inline(
    codec: &Codec,
    plan: &PartPlan<'_>,
    payload: &mut PayloadReader,
    expected: &Expected,
    algorithm: Option<Algorithm>,
) -> Result<(Vec<Vec<u8>>, Verified), OpError> {
    let mut encoder = codec.encoder(plan.layout);
    let mut digests = Digests::new(algorithm);
    let mut cipher = plan.seal.as_ref().map(PartSeal::cipher);
    let mut fragments = vec![Vec::new(); codec.width()];
    let mut collect = |_: u64, frames: Vec<Bytes>| {
        for (fragment, frame) in fragments.iter_mut().zip(frames) {
            fragment.extend_from_slice(&frame);
        }
    };
    while let Some(chunk) = payload.next().await? {
        digests.update(&chunk).await;
        let chunk = sealed(&mut cipher, chunk);
        encoder.push(&chunk, &mut collect).map_err(size_error)?;
    }
    encoder.finish(&mut collect).map_err(size_error)?;
    let verified = digests
        .verify(expected, checksum_trailer(payload, algorithm))
        .await?;
    Ok((fragments, verified))
}

/// Streams each holder its fragment. The last stripe is held back until the payload has been
/// verified: a holder only commits a fragment file whose every frame arrived, so a failed
/// verification (or a broken client connection) leaves nothing behind.
async fn stream_to_holders(
    cluster: &Cluster,
    codec: &Codec,
    plan: &PartPlan<'_>,
    payload: &mut PayloadReader,
    expected: &Expected,
    algorithm: Option<Algorithm>,
) -> Result<(Vec<bool>, Verified), OpError> {
    let targets: Vec<(&str, u8)> = plan
        .holders
        .iter()
        .map(|h| (h.node.addr.as_str(), h.slot))
        .collect();
    let (checked, outcomes) = fanout::upload(
        cluster,
        &targets,
        &plan.fragment_id,
        plan.layout,
        |fanout| feed_holders(codec, plan, payload, expected, algorithm, fanout, cluster),
    )
    .await;
    // Holders that refused (say, with full disks) make the feed give up first: report why.
    let checked = checked.map_err(|e| match e {
        OpError::Unavailable(why) => shortfall(why, &outcomes),
        other => other,
    })?;
    let stored: Vec<bool> = outcomes.iter().map(Result::is_ok).collect();
    if let Err(e) = cluster
        .write_quorum()
        .tally(&outcomes, "holders stored the data")
    {
        remove_fragments(cluster, plan.holders, &plan.fragment_id, &stored).await;
        return Err(e);
    }
    Ok((stored, checked.finish().await))
}

/// Feeds every stripe to the holders, holding the last one back until the payload is verified;
/// returns with the ETag's MD5 perhaps still hashing.
async fn feed_holders(
    codec: &Codec,
    plan: &PartPlan<'_>,
    payload: &mut PayloadReader,
    expected: &Expected,
    algorithm: Option<Algorithm>,
    mut fanout: FanOut,
    cluster: &Cluster,
) -> Result<Checked, OpError> {
    let mut encoder = codec.encoder(plan.layout);
    let mut digests = Digests::new(algorithm);
    let mut cipher = plan.seal.as_ref().map(PartSeal::cipher);
    let mut held: Option<Vec<Bytes>> = None;
    let mut ready = Vec::new();
    while let Some(chunk) = payload.next().await? {
        digests.update(&chunk).await;
        let chunk = sealed(&mut cipher, chunk);
        encoder
            .push(&chunk, &mut |_, frames| ready.push(frames))
            .map_err(size_error)?;
        for frames in ready.drain(..) {
            if let Some(previous) = held.replace(frames) {
                send_stripe(&mut fanout, plan.holders, previous, cluster).await?;
            }
        }
    }
    encoder
        .finish(&mut |_, frames| ready.push(frames))
        .map_err(size_error)?;
    // The claims about the bytes are compared before the last stripe goes out. The MD5 that is
    // only the ETag finishes later, while the holders write (see `Md5Stream`).
    let checked = digests
        .check(expected, checksum_trailer(payload, algorithm))
        .await?;
    for frames in held.into_iter().chain(ready) {
        send_stripe(&mut fanout, plan.holders, frames, cluster).await?;
    }
    fanout.finish();
    Ok(checked)
}

/// Queues one stripe's frames, each holder its fragment's; fails once fewer than a write quorum
/// of holders are taking them.
async fn send_stripe(
    fanout: &mut FanOut,
    holders: &[Holder<'_>],
    frames: Vec<Bytes>,
    cluster: &Cluster,
) -> Result<(), OpError> {
    let ordered = holders
        .iter()
        .map(|h| frames[h.slot as usize].clone())
        .collect();
    let alive = fanout.send(ordered).await;
    cluster
        .write_quorum()
        .require(alive, holders.len(), "holders are taking the data")
}

/// Best-effort removal of fragments that will never be committed.
pub async fn remove_fragments(
    cluster: &Cluster,
    holders: &[Holder<'_>],
    fragment_id: &str,
    stored: &[bool],
) {
    let removals = holders
        .iter()
        .zip(stored)
        .filter(|(_, s)| **s)
        .map(|(h, _)| {
            cluster
                .client
                .delete_fragment(&h.node.addr, fragment_id, h.slot)
        });
    join_all(removals).await;
}

/// A chunk of the payload as it is stored: through the part's cipher, if it has one.
fn sealed(cipher: &mut Option<PartCipher>, chunk: Bytes) -> Bytes {
    match cipher {
        Some(cipher) => cipher.next(&chunk),
        None => chunk,
    }
}

fn checksum_trailer(payload: &PayloadReader, algorithm: Option<Algorithm>) -> Option<&str> {
    algorithm.and_then(|a| payload.trailer(&a.header()))
}

fn size_error(e: erasure::ErasureError) -> OpError {
    match e {
        erasure::ErasureError::SizeMismatch { .. } => S3Error::IncompleteBody.into(),
        other => OpError::Internal(other.to_string()),
    }
}

/// What a new object version keeps besides its bytes.
pub struct NewObject {
    pub size: u64,
    pub headers: Vec<(String, String)>,
    pub tags: Vec<(String, String)>,
    /// The Object Lock state the request asked for (the bucket's default retention applies
    /// where it asked for none).
    pub lock: ObjectLock,
    /// The keys to encrypt it with, if it is to be encrypted.
    pub sse: Option<Sse>,
    /// Its owner and ACL (`ObjectRecord::acl`).
    pub acl: Option<Acl>,
    /// Set when the version was made in another region and is applied here with its own
    /// version; `None`: a new version made now.
    pub replica: Option<Replica>,
}

/// A committed object version.
pub struct Written {
    pub etag: String,
    pub checksum: Option<StoredChecksum>,
    pub version: Version,
    /// Its `x-amz-version-id`, in a bucket that has versioning.
    pub version_id: Option<String>,
    pub encryption: Option<Encryption>,
}

/// Stores `payload` as the new version of `key` and commits it to a write quorum of its holders;
/// with a precondition, only if the key is still as the condition was checked against.
#[allow(clippy::too_many_arguments)]
pub async fn write_object(
    cluster: &Cluster,
    bucket: &BucketRecord,
    key: &str,
    object: NewObject,
    payload: &mut PayloadReader,
    expected: &Expected,
    precondition: Option<&Precondition>,
) -> Result<Written, OpError> {
    let size = object.size;
    let version = Replica::version_of(object.replica);
    let holders = cluster.write_holders(&bucket.id, key);
    let fragment_id = fragment_id(&[&bucket.id, key.as_bytes(), version.to_string().as_bytes()]);
    let codec = cluster.codec_for(size);
    let plan = PartPlan {
        holders: &holders,
        layout: cluster.stripe_layout(codec, size),
        number: 1,
        fragment_id: fragment_id.clone(),
        inline: size <= cluster.inline_threshold,
        seal: object.sse.as_ref().map(Sse::seal),
    };
    let stored = store_part(cluster, codec, plan, payload, expected).await?;
    let claimed = match precondition {
        Some(precondition) => {
            match claim(cluster, bucket, key, &holders, &stored.stored, precondition).await {
                Ok(claimed) => Some(claimed),
                Err(e) => {
                    remove_fragments(cluster, &holders, &fragment_id, &stored.stored).await;
                    return Err(e);
                }
            }
        }
        None => None,
    };
    let new = NewVersion {
        version,
        versioned: object
            .replica
            .map_or(bucket.versions_writes(), |r| r.versioned),
        size,
        etag: stored.data.md5.clone(),
        checksum: stored.verified.checksum.clone(),
        headers: object.headers,
        tags: object.tags,
        lock: lock_of(bucket, object.lock, version),
        codec: codec.clone(),
        completed_upload: None,
        encryption: object.sse.map(|s| s.encryption),
        acl: object.acl,
        replica: object.replica,
    };
    let record_for = |slot: u8| new.record(slot, vec![stored.for_holder(slot as usize)]);
    commit_record(
        cluster,
        bucket,
        key,
        &holders,
        &stored.stored,
        record_for,
        None,
        claimed.as_ref(),
    )
    .await?;
    Ok(new.written(bucket))
}

/// A new version of an object: what every holder records of it, but its fragment slot and parts.
pub struct NewVersion {
    pub version: Version,
    /// Written with versioning enabled (else it is the key's null version).
    pub versioned: bool,
    pub size: u64,
    pub etag: String,
    pub checksum: Option<StoredChecksum>,
    pub headers: Vec<(String, String)>,
    pub tags: Vec<(String, String)>,
    pub lock: ObjectLock,
    pub codec: Codec,
    /// The multipart upload this version completes.
    pub completed_upload: Option<String>,
    pub encryption: Option<Encryption>,
    pub acl: Option<Acl>,
    /// Applied from another region (`ObjectRecord::replica`), with the revision it had there.
    pub replica: Option<Replica>,
}

/// The Object Lock state of a new version: what its request asked for, with the bucket's default
/// retention (counted from the version's time, this gateway's clock) where it asked for none.
pub fn lock_of(bucket: &BucketRecord, asked: ObjectLock, version: Version) -> ObjectLock {
    let default = bucket
        .object_lock
        .as_ref()
        .and_then(|l| l.default_retention)
        .map(|d| d.from(version.unix_millis()));
    ObjectLock {
        retention: asked.retention.or(default),
        ..asked
    }
}

impl NewVersion {
    /// The record the holder of fragment slot `fragment` commits, with its own `parts`.
    pub fn record(&self, slot: u8, parts: Vec<PartData>) -> ObjectRecord {
        ObjectRecord {
            version: self.version,
            revision: self.replica.map_or(0, |r| r.revision),
            versioned: self.versioned,
            deleted: false,
            size: self.size,
            etag: self.etag.clone(),
            headers: self.headers.clone(),
            checksum: self.checksum.clone(),
            data_shards: self.codec.data_shards() as u8,
            parity_shards: self.codec.parity_shards() as u8,
            slot,
            parts,
            tags: self.tags.clone(),
            modified: None,
            lock: self.lock,
            completed_upload: self.completed_upload.clone(),
            encryption: self.encryption.clone(),
            acl: self.acl.clone(),
            replica: self.replica.is_some(),
            queued: false,
        }
    }

    /// The committed version, as the response to its write names it.
    pub fn written(self, bucket: &BucketRecord) -> Written {
        let version_ref = if self.versioned {
            VersionRef::Id(self.version)
        } else {
            VersionRef::Null
        };
        Written {
            etag: self.etag,
            checksum: self.checksum,
            version: self.version,
            version_id: version_id(bucket, version_ref),
            encryption: self.encryption,
        }
    }
}
