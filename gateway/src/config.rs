//! Configuration of one S3 gateway.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Address the S3 API listens on.
    pub listen: SocketAddr,
    /// Region name clients sign requests for. Default `us-east-1`, which SDKs use when unconfigured.
    #[serde(default = "default_region")]
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: SecretKey,
    /// PEM certificate chain and key: when both are set the S3 API speaks only TLS.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Objects (and parts) up to this size keep their fragments inside the metadata record. Default 64 KiB.
    #[serde(default = "default_inline_threshold")]
    pub inline_threshold: u64,
    /// Single-part objects up to this size are coded with as many data shards as a read quorum
    /// R (two, with the default write quorum of k+1) instead of k, inside the record. A read of
    /// one then needs R records rather than k, which for 4 KiB objects is about 1.5 times the
    /// GETs a second on one machine (see docs/performance.md), and it survives the loss of all
    /// but R holders. The price is space: (k+m)/R times the object instead of (k+m)/k (3 against
    /// 1.5 with the defaults; about 1.6 times the bytes for a 4 KiB object once each record's own
    /// ~600 bytes are counted). Default 4 KiB; 0 codes every object with k.
    /// (`replicate_threshold` is its former name, from when these objects were whole copies on
    /// every holder.)
    #[serde(
        default = "default_small_object_threshold",
        alias = "replicate_threshold"
    )]
    pub small_object_threshold: u64,
    /// Domain for virtual-hosted-style requests: a `Host` of `<bucket>.<root_domain>` names the
    /// bucket, and the path is the key. Default: none (path-style only). Path-style requests keep
    /// working either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_domain: Option<String>,
    /// Bytes per erasure block; a stripe carries k of them. Default 256 KiB.
    #[serde(default = "default_block_size")]
    pub block_size: usize,
    /// Most bytes per second a heal rebuilds, so that it does not starve clients. Default 64 MiB/s.
    #[serde(default = "default_heal_bytes_per_sec")]
    pub heal_bytes_per_sec: u64,
    /// Multipart uploads left open this many days are aborted in every bucket, whatever its
    /// lifecycle rules say (they hold disk space nobody sees). Default 7; 0 never aborts them.
    #[serde(default = "default_abandoned_upload_days")]
    pub abandoned_upload_days: u32,
    /// Length in seconds of a lifecycle "day", for the bucket rules and `abandoned_upload_days`.
    /// Default 86400; tests shorten it to see rules applied in seconds. The lifecycle task runs
    /// every 1/24 of a day (at least every second).
    #[serde(default = "default_lifecycle_day_secs")]
    pub lifecycle_day_secs: u64,
    /// Every this many seconds, each node in turn is compared with the other holders of its shards
    /// (per-shard digests) and healed where it differs: this repairs what no write noticed, such
    /// as a write whose gateway died part-way or a disk replaced while idle. Default 3600; 0 off.
    #[serde(default = "default_anti_entropy_secs")]
    pub anti_entropy_secs: u64,
    /// SSE-S3's master key, which wraps the key of every object encrypted with SSE-S3: base64 of
    /// 32 random bytes (`head -c32 /dev/urandom | base64`). Every gateway of a cluster needs the
    /// same one, and losing it loses those objects. Default: none, and SSE-S3 is refused (501).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sse_master_key: Option<SecretKey>,
    /// A file holding `sse_master_key` (readable only by the gateway), instead of the config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sse_master_key_file: Option<PathBuf>,
    /// Take SSE-C keys over plain HTTP. S3 refuses them, since the key would cross the network in
    /// the clear: set it only for a gateway behind a proxy that terminates TLS. Default false.
    #[serde(default)]
    pub sse_c_without_tls: bool,
    /// Limits on client connections: caps in total and per address, header, idle and stall
    /// timeouts, header size (`[gateway.connections]`; see `listener::Limits` for each default).
    #[serde(default)]
    pub connections: listener::Limits,
    /// TCP congestion control of client connections (`listener::set_congestion_control`), for
    /// clients on links where `bbr`'s pacing only costs (the same machine, the same LAN): `reno`
    /// there. Default "": the system's, which suits clients across the internet and replication
    /// from other regions. A name the system refuses is logged and the system's kept.
    #[serde(default)]
    pub tcp_congestion_control: String,
    /// Address of the operator's port: the web console on `/`, Prometheus metrics on `/metrics`,
    /// over TLS when `tls_cert` is set. Default: none, no such port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_listen: Option<SocketAddr>,
    /// Serve `/metrics` to anyone who reaches the port. Default false: a scrape must send
    /// `Authorization: Bearer <token>`, the token `tessera admin metrics-token` prints (derived
    /// from the cluster secret; `tessera dev` writes it into its `prometheus.yml`).
    #[serde(default)]
    pub metrics_public: bool,
    /// A console session unused for this many seconds ends. Default 3600.
    #[serde(default = "default_console_idle_secs")]
    pub console_idle_secs: u64,
    /// A console session ends this many seconds after its login, used or not. Default 43200.
    #[serde(default = "default_console_session_secs")]
    pub console_session_secs: u64,
}

fn default_region() -> String {
    "us-east-1".into()
}
fn default_inline_threshold() -> u64 {
    64 * 1024
}
fn default_small_object_threshold() -> u64 {
    4096
}
fn default_block_size() -> usize {
    256 * 1024
}
fn default_heal_bytes_per_sec() -> u64 {
    64 << 20
}
fn default_abandoned_upload_days() -> u32 {
    7
}
fn default_lifecycle_day_secs() -> u64 {
    86_400
}
fn default_anti_entropy_secs() -> u64 {
    3600
}
fn default_console_idle_secs() -> u64 {
    3600
}
fn default_console_session_secs() -> u64 {
    43_200
}

impl GatewayConfig {
    /// The SSE-S3 master key, from `sse_master_key` or `sse_master_key_file`.
    pub fn master_key(&self) -> anyhow::Result<Option<[u8; 32]>> {
        use anyhow::Context;
        use base64::Engine;
        let text = match (&self.sse_master_key, &self.sse_master_key_file) {
            (None, None) => return Ok(None),
            (Some(_), Some(_)) => {
                anyhow::bail!("set sse_master_key or sse_master_key_file, not both")
            }
            (Some(key), None) => key.0.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?,
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .context("the SSE master key is not base64")?;
        let key = bytes
            .try_into()
            .map_err(|_| anyhow::anyhow!("the SSE master key must be 32 bytes"))?;
        Ok(Some(key))
    }
}

/// An S3 secret access key. Never printed.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretKey(pub String);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(***)")
    }
}
