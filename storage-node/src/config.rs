//! Configuration of one storage node.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

/// One storage node process.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Must match one `cluster.nodes[].id`.
    pub id: String,
    /// Holds `meta/` (RocksDB), `fragments/` and `pid`.
    pub data_dir: PathBuf,
    /// Address to listen on. Default: this node's `addr` in the cluster list.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// PEM certificate chain and private key: when both are set the node's port speaks only TLS
    /// (raw fragment transfers included), and the cluster's `tls_ca` must name the CA that signed
    /// the certificate, which must name the host of this node's `addr`. Default: none, plain HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Free space the node keeps on its disk: below it, it refuses new data (507) but still takes
    /// deletes, so that a full disk never stops metadata writes half-way. Default 64 MiB.
    #[serde(default = "default_min_free_bytes")]
    pub min_free_bytes: u64,
    /// How long the version an inline overwrite replaced is kept, so that an overwrite which never
    /// reached enough holders can be undone by the next reader or heal (see `Store::undo`). Keep it
    /// well above the gateways' `anti_entropy_secs`, which bounds how long such an overwrite can go
    /// unnoticed. Default 86400 (a day).
    #[serde(default = "default_keep_replaced_secs")]
    pub keep_replaced_secs: u64,
    /// How long the fragment files of a version that an overwrite (or a multipart completion)
    /// superseded stay on disk: a read that found that version just before the overwrite is still
    /// opening them. Overwritten data takes this long to free its space. Default 30.
    #[serde(default = "default_keep_superseded_secs")]
    pub keep_superseded_secs: u64,
    /// How old a fragment file that nothing refers to must be before it is removed: a write that
    /// never committed here (its gateway died) leaves one. Readers and heals may still finish an
    /// unfinished write from such files, so keep it well above the gateways' `anti_entropy_secs`.
    /// Default 86400 (a day).
    #[serde(default = "default_orphan_age_secs")]
    pub orphan_age_secs: u64,
    /// Every this many seconds (from the start of one pass to the start of the next) the scrubber
    /// re-reads every fragment file and checks its blocks' hashes, so that bitrot in data nobody
    /// reads is found and healed while the other holders can still rebuild it. Default 604800 (a
    /// week); 0: only the passes asked for (`tessera admin scrub start NODE`).
    #[serde(default = "default_scrub_interval_secs")]
    pub scrub_interval_secs: u64,
    /// Most bytes per second a scrub pass reads, so that it stays in the background. Default 32
    /// MiB/s (a pass over 4 TB takes about 36 hours).
    #[serde(default = "default_scrub_bytes_per_sec")]
    pub scrub_bytes_per_sec: u64,
    /// Limits on the connections the node accepts (`[node.connections]`; see `listener::Limits`
    /// for each default). Calls are authenticated from their head, before any body is read, so
    /// only the cluster's own gateways and nodes get as far as sending one; a body signed by its
    /// hash that stops arriving for `stall_timeout_secs` still fails (408), as does one over
    /// 64 MiB (413). Fragment bodies wait 300 s instead: a gateway sends them as fast as its own
    /// S3 client does.
    #[serde(default)]
    pub connections: listener::Limits,
    /// TCP congestion control of the connections the node accepts, all from its cluster's
    /// gateways and nodes (`listener::set_congestion_control`). Default `reno`: it never paces
    /// its sends, which `bbr` (some systems' default) does at a cost that halved 64 MiB GETs here,
    /// and every process may choose it. "" keeps the system's; a name the system refuses is
    /// logged and the system's kept.
    #[serde(default = "default_tcp_congestion_control")]
    pub tcp_congestion_control: String,
    /// Serve `/metrics` on the node's port to anyone who reaches it. Default false: a scrape
    /// must send `Authorization: Bearer <token>`, the token derived from the cluster secret that
    /// `tessera admin metrics-token` prints.
    #[serde(default)]
    pub metrics_public: bool,
}

fn default_scrub_interval_secs() -> u64 {
    7 * 86_400
}

fn default_scrub_bytes_per_sec() -> u64 {
    32 << 20
}

fn default_keep_replaced_secs() -> u64 {
    86_400
}

fn default_keep_superseded_secs() -> u64 {
    30
}

fn default_orphan_age_secs() -> u64 {
    86_400
}

fn default_tcp_congestion_control() -> String {
    "reno".to_string()
}
fn default_min_free_bytes() -> u64 {
    64 << 20
}

impl NodeConfig {
    /// A node with the default settings.
    pub fn new(id: String, data_dir: PathBuf) -> NodeConfig {
        NodeConfig {
            id,
            data_dir,
            listen: None,
            tls_cert: None,
            tls_key: None,
            min_free_bytes: default_min_free_bytes(),
            keep_replaced_secs: default_keep_replaced_secs(),
            keep_superseded_secs: default_keep_superseded_secs(),
            orphan_age_secs: default_orphan_age_secs(),
            scrub_interval_secs: default_scrub_interval_secs(),
            scrub_bytes_per_sec: default_scrub_bytes_per_sec(),
            connections: listener::Limits::default(),
            tcp_congestion_control: default_tcp_congestion_control(),
            metrics_public: false,
        }
    }
}
