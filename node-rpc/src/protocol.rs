//! The node protocol: request and response types and paths. Calls are signed with the cluster
//! secret as `auth` describes.

use crate::record::{
    BucketId, ListEntry, ObjectRecord, PartRecord, UploadRecord, Version, VersionRef,
};
use serde::{Deserialize, Serialize};

pub use crate::auth::{unix_now, ClusterSecret};

/// Headers of a fragment upload that give its stripe geometry, so the node can check every frame.
pub const SIZE_HEADER: &str = "x-tessera-size";
pub const DATA_SHARDS_HEADER: &str = "x-tessera-data-shards";
pub const BLOCK_SIZE_HEADER: &str = "x-tessera-block-size";
/// The upload's frame format (`erasure::FrameFormat::number`); absent for format 1, which every
/// node knows. A gateway sends format 2 only to a cluster whose nodes all report it
/// (`NodeHealth::frame_formats`).
pub const FRAMES_HEADER: &str = "x-tessera-frames";
/// The protocol a large fragment transfer may switch its connection to (HTTP `Upgrade`), after
/// the node has checked the request and answered 101:
/// - A read: the node sends the asked range alone on the connection with `sendfile`, so the bytes
///   go from the page cache to the socket without passing through the node (the read path of a
///   large GET spent a third of all CPU in the nodes, copying). A lookup that asks for the first
///   fragment (`?fragment`) may switch too, when the node has a large fragment for it: the
///   record's length (4 bytes, big-endian) and the record come first. Over plain TCP the node
///   then serves calls on the connection again, and says so in its 101 (`RESUME_HEADER`); over
///   TLS, and in releases before 2026-12-06, it closes it. Nodes that do not offer the switch
///   answer with an ordinary body.
/// - An upload: the gateway sends the fragment's bytes and then the call's stream tag (see
///   `auth`), and the node reads them straight into its direct-I/O buffer, then answers with one
///   line (`raw_upload_answer`) and closes the connection. A sender that stops early, or a tag
///   that does not match, leaves nothing behind, as with an HTTP upload.
pub const RAW_FRAGMENT_PROTOCOL: &str = "tessera-fragment";
/// In a node's 101 to a raw read: after the range, the node serves calls on the connection
/// again, so the reader may keep it for its next raw read to that node.
pub const RESUME_HEADER: &str = "x-tessera-resume";

/// A node's answer to a raw fragment upload: an HTTP status code, a space, a message; 200 once
/// the fragment is durable.
pub fn raw_upload_answer(status: http::StatusCode, message: &str) -> String {
    format!("{} {message}", status.as_u16())
}

/// Reads `raw_upload_answer`: the status and the message.
pub fn parse_raw_upload_answer(answer: &[u8]) -> Option<(http::StatusCode, String)> {
    let answer = std::str::from_utf8(answer).ok()?;
    let (code, message) = answer.split_once(' ')?;
    let status = http::StatusCode::from_bytes(code.as_bytes()).ok()?;
    Some((status, message.to_string()))
}
/// Commit of an object record (a PUT, a completed multipart upload, or a delete's tombstone).
#[derive(Debug, Serialize, Deserialize)]
pub struct CommitRequest {
    #[serde(with = "hex_bucket")]
    pub bucket: BucketId,
    pub key: String,
    pub record: ObjectRecord,
    /// Set when the record completes this multipart upload: its upload and part records go.
    #[serde(default)]
    pub upload_id: Option<String>,
    /// Set for a conditional write: the token of the claim it holds on the key (see `ClaimRequest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<String>,
    /// Set for a change made in this region to a bucket that replicates: the holder queues it for
    /// each target region in the same synced write (its outbox).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicate: Option<Replicate>,
}

/// The peer regions a change made here is to be sent to, and the name they know its bucket by.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replicate {
    pub bucket: String,
    pub targets: Vec<String>,
}

/// A change queued in a holder's outbox for a peer region.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutboxItem {
    /// The entry's key in the outbox, hex: the same on every holder of the change, so that a
    /// drainer merges the holders' copies and removes them by it. Ordered by version.
    pub id: String,
    pub bucket: String,
    /// The version: an object, delete marker or tombstone to send, or, with `purge`, a version
    /// deleted for good.
    pub entry: ListEntry,
    /// The version's revision when it was queued (a tag change queues it again, higher).
    #[serde(default)]
    pub revision: u32,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub purge: bool,
    /// With `OutboxRequest::records`: this holder's record of the version, when it keeps that
    /// version with its data inside the record (see `OutboxRequest::records`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<ObjectRecord>,
}

impl OutboxItem {
    /// What a drainer reports when the target has taken this entry.
    pub fn delivered(&self) -> Delivered {
        Delivered {
            id: self.id.clone(),
            revision: self.revision,
            purge: self.purge,
        }
    }
}

/// An outbox entry the target has taken: removed from a holder only if the holder's entry is
/// still that one (not queued again since, by a later revision or a purge of the version).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivered {
    pub id: String,
    pub revision: u32,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub purge: bool,
}

/// Asks a node for the first entries of its outbox for one target region.
#[derive(Debug, Serialize, Deserialize)]
pub struct OutboxRequest {
    pub target: String,
    pub limit: usize,
    /// Only entries after this id (`OutboxItem::id`): the next page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Also count the outbox for the target from there on (`OutboxPage::backlog`): a scan.
    #[serde(default)]
    pub count: bool,
    /// Also send, with each entry for an object whose data is inside its record (small
    /// objects), this holder's record of that version if it keeps one of the k data slots
    /// (`OutboxItem::record`): a drainer that hears the version from its k data holders sends
    /// it without looking it up. Nodes of a release before it ignore it, and the drainer looks
    /// those versions up.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub records: bool,
}

/// Asks a node for the lease on draining the outboxes for one target region (see
/// `gateway::background::replication`): granted when no other drainer holds it, for `ttl_ms`.
#[derive(Debug, Serialize, Deserialize)]
pub struct LeaseRequest {
    pub target: String,
    /// The gateway asking, by an id of its own (a new one each time it starts).
    pub drainer: String,
    pub ttl_ms: u64,
    /// Gives the lease up, if this drainer holds it.
    #[serde(default)]
    pub release: bool,
}

/// Whether the lease was granted, and who holds it.
#[derive(Debug, Serialize, Deserialize)]
pub struct LeaseAnswer {
    pub granted: bool,
    pub holder: Option<String>,
}

/// A node's outbox for one target region: its first entries, oldest version first, and with
/// `count`, the size of its whole backlog per bucket.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct OutboxPage {
    pub items: Vec<OutboxItem>,
    #[serde(default)]
    pub backlog: Option<Vec<BucketBacklog>>,
}

/// Entries queued for one target region in one bucket, and their bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketBacklog {
    pub bucket: String,
    pub entries: u64,
    pub bytes: u64,
}

/// What a drainer did with outbox entries for a target region: delivered (the target answered
/// after its write quorum committed them; the holder removes them) or refused by the target (the
/// holder keeps them and shows the error as the version's status).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct OutboxReport {
    pub target: String,
    pub delivered: Vec<Delivered>,
    pub failed: Vec<(String, String)>,
}

/// A version's replication as one holder knows it: the target regions it is still queued for,
/// and the last refusal by one of them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxState {
    pub targets: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
}

/// One commit's outcome in a node's answer to `POST /v1/commits` (a JSON array of plain
/// `CommitRequest`s, none with a claim), in the order they were asked.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommitOutcome {
    /// What `POST /v1/commit` answers: `false` when the holder already has a newer version.
    Applied(bool),
    /// Refused, with the status and message `POST /v1/commit` would have been answered with.
    Refused { status: u16, error: String },
}

/// Most entries a node takes in one `POST /v1/objects` or `POST /v1/commits`: it serves a batch
/// in one go on its async thread, so a batch as large as the body limit allows (over a million
/// lookups) would hold the thread for seconds. Far above what a gateway gathers
/// (`gather::MAX_BATCH`).
pub const MAX_BATCH_ENTRIES: usize = 1024;

/// One lookup in `POST /v1/objects` (a JSON array of them): what `GET /v1/object/{bucket}/{key}`
/// asks with no query but `version`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LookupRequest {
    #[serde(with = "hex_bucket")]
    pub bucket: BucketId,
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<VersionRef>,
}

/// One lookup's outcome in a node's answer to `POST /v1/objects`, in the order they were asked.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LookupOutcome<R = ObjectRecord> {
    /// What `GET /v1/object/...` answers.
    Found(Box<Lookup<R>>),
    /// Refused, with the status and message `GET /v1/object/...` would have been answered with.
    Refused { status: u16, error: String },
}

/// A holder's answer for the current version of a key, or for one version of it. A node may
/// hold the record as something other than an `ObjectRecord` (`R`) that is written the same: the
/// JSON it stores, sent as it is rather than parsed and written again.
#[derive(Debug, Serialize, Deserialize)]
pub struct Lookup<R = ObjectRecord> {
    pub record: Option<R>,
    /// Versions deleted here for good that a stale holder could still show: those newer than the
    /// current record, or the version asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub purged: Vec<Version>,
    /// With `?fragment`: the length of the holder's fragment file of the record's first part,
    /// which follows the record in the response; `None`: it does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fragment_len: Option<u64>,
    /// The record's version is still queued here for these peer regions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbox: Option<OutboxState>,
}

impl<R> Lookup<R> {
    /// An answer that is a record alone.
    pub fn of(record: Option<R>) -> Lookup<R> {
        Lookup {
            record,
            purged: Vec::new(),
            fragment_len: None,
            outbox: None,
        }
    }
}

/// Deletes one version of a key for good.
#[derive(Debug, Serialize, Deserialize)]
pub struct PurgeRequest {
    #[serde(with = "hex_bucket")]
    pub bucket: BucketId,
    pub key: String,
    pub version: VersionRef,
    /// The delete may remove a version under a GOVERNANCE retention (never one under a
    /// COMPLIANCE retention or a legal hold: the holder refuses those with 423 Locked).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bypass_governance: bool,
    /// As `CommitRequest::replicate`: the purge is queued for these peer regions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicate: Option<Replicate>,
}

/// One shard's share of a node's records in a bucket (see `Store::digests`): holders of the shard
/// that are in step have equal digests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardDigest {
    /// XOR of a hash of each version's key, version, revision, whether it is a delete marker and
    /// whether its fragment files are all on the node.
    pub digest: [u8; 16],
    pub versions: u64,
}

/// One shard's share of a node's objects in a bucket (see `Store::usage`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardUsage {
    /// Current versions that are not delete markers, and their bytes.
    pub objects: u64,
    pub bytes: u64,
    /// Every version, delete markers included, and the bytes of those that are not markers.
    pub versions: u64,
    pub version_bytes: u64,
}

/// Undoes an overwrite that never reached enough holders to be read (see `Store::undo`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UndoRequest {
    #[serde(with = "hex_bucket")]
    pub bucket: BucketId,
    pub key: String,
    pub version: Version,
    /// Only if the node applied `version` at least this long ago: its writer has given up.
    pub settled_secs: u64,
}

/// Reserves a key for one conditional write while its current version is not newer than
/// `expected` (the version the writer checked its condition against; `None`: the key had none).
#[derive(Debug, Serialize, Deserialize)]
pub struct ClaimRequest {
    #[serde(with = "hex_bucket")]
    pub bucket: BucketId,
    pub key: String,
    pub token: String,
    pub expected: Option<Version>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClaimAnswer {
    Granted,
    /// Another conditional write holds the key.
    Busy,
    /// The key has a newer version than the writer checked.
    Changed,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct UploadRequest {
    #[serde(with = "hex_bucket")]
    pub bucket: BucketId,
    pub record: UploadRecord,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PartRequest {
    pub upload_id: String,
    pub record: PartRecord,
}

/// Keys of a bucket after `start_after`, under `prefix`. With a delimiter, keys that hold it after the
/// prefix come back once as a common prefix. Tombstones are returned too (the gateway needs them to
/// override stale copies on other nodes), except under a common prefix.
#[derive(Debug, Serialize, Deserialize)]
pub struct ListRequest {
    #[serde(with = "hex_bucket")]
    pub bucket: BucketId,
    pub prefix: String,
    pub start_after: Option<String>,
    pub delimiter: Option<String>,
    pub limit: usize,
}

/// Versions of a bucket's keys under `prefix`: keys in order, each key's versions newest first,
/// starting after `key_marker` (after its version `version_marker` when given, else after all of
/// its versions). With a delimiter, keys that hold it after the prefix come back once as a common
/// prefix.
#[derive(Debug, Serialize, Deserialize)]
pub struct VersionListRequest {
    #[serde(with = "hex_bucket")]
    pub bucket: BucketId,
    pub prefix: String,
    pub key_marker: Option<String>,
    pub version_marker: Option<VersionRef>,
    pub delimiter: Option<String>,
    pub limit: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ListItem {
    Key(ListEntry),
    Prefix(String),
}

impl ListItem {
    pub fn name(&self) -> &str {
        match self {
            ListItem::Key(entry) => &entry.key,
            ListItem::Prefix(prefix) => prefix,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ListResponse {
    pub items: Vec<ListItem>,
    pub truncated: bool,
}

mod hex_bucket {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8; 16], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 16], D::Error> {
        let s = String::deserialize(d)?;
        let mut id = [0u8; 16];
        hex::decode_to_slice(s, &mut id).map_err(serde::de::Error::custom)?;
        Ok(id)
    }
}

/// The query parameter that turns a metadata call into a hint for the node it names (see the
/// storage node's `hints` module).
pub const HINT_QUERY: &str = "hint_for";

/// What the scrubber has done, as the node's health reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScrubStatus {
    /// A pass is under way.
    pub running: bool,
    /// Passes finished since the node was first started.
    pub passes: u64,
    /// When the current or last pass began (a node that never scrubbed: when it first started);
    /// the next one begins `scrub_interval_secs` later. Seconds since the Unix epoch.
    pub pass_started_unix: u64,
    pub last_pass_finished_unix: Option<u64>,
    /// Fragment files and bytes checked by the current or last pass.
    pub files_checked: u64,
    pub bytes_checked: u64,
    /// Fragment files and bytes the last finished pass checked: how far the current one has to
    /// go, about.
    #[serde(default)]
    pub last_pass_files: u64,
    #[serde(default)]
    pub last_pass_bytes: u64,
    /// Fragment files found corrupt (and moved aside) and found missing, over the node's life.
    pub corrupt: u64,
    pub missing: u64,
    /// Of the damaged files found, those rebuilt since (by a heal or a read repair) over the
    /// node's life, and those still lacking (up to the first 10,000 tracked; a file whose
    /// version was since overwritten or deleted is no longer counted).
    #[serde(default)]
    pub repaired: u64,
    #[serde(default)]
    pub awaiting_repair: u64,
    /// The key of the last record the current pass checked, in hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<String>,
}

impl ScrubStatus {
    /// Fragment files found damaged so far: a change means the node needs healing.
    pub fn damaged(&self) -> u64 {
        self.corrupt + self.missing
    }
}
