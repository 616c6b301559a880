//! The one configuration file of a Tessera process: the cluster it belongs to, and the roles it runs.
//!
//! ```toml
//! # worker_threads = 2      # async runtime threads of this process (default: one per core)
//!
//! [cluster]
//! secret = "..."            # shared by every node and gateway
//! data_shards = 4           # k (default 4)
//! parity_shards = 2         # m (default 2)
//! # write_quorum = 5        # default k+1
//! nodes = [ { id = "z1-n1", zone = "z1", addr = "10.0.0.1:7001" }, ... ]
//! # tls_ca = "/etc/tessera/node-ca.pem"  # call nodes over TLS, trusting only this CA
//! #                                      # (default: none, plain HTTP; then every node needs
//! #                                      # tls_cert and tls_key)
//!
//! # [cluster.region]          # this cluster is one of several regions (default: a region alone)
//! # name = "us-east-1"        # its name; its gateways' `region` must be the same
//! # number = 1                # 1-255, unique among the regions, never reused
//! # replication_secret = "..."  # the same in every region: signs what regions send each other
//! # read_fallback = false     # a GET or HEAD of an object missing here asks the bucket's peer
//! #                           # regions (costs a round trip to them on every miss)
//! # [[cluster.region.peers]]  # every other region, with the same names and numbers everywhere
//! # name = "eu-west-1"
//! # number = 2
//! # endpoint = "https://s3.eu-west-1.example.com"
//! # ca_file = "/etc/tessera/eu-ca.pem"  # CA of its TLS certificate (default: the system's roots)
//!
//! [node]                    # run a storage node
//! id = "z1-n1"
//! data_dir = "/var/lib/tessera"
//! # tls_cert = "/etc/tessera/node.pem"  # serve the node port over TLS only (default: plain);
//! # tls_key = "/etc/tessera/node.key"   # the certificate must name the host of this node's addr
//! # scrub_interval_secs = 604800   # re-read and check every fragment file this often
//! #                                # (0: only when asked, `tessera admin scrub start`)
//! # scrub_bytes_per_sec = 33554432 # at most this fast
//! # metrics_public = false  # /metrics on the node port without the metrics token
//! # tcp_congestion_control = "reno"  # of the connections from gateways and nodes ("": the system's)
//!
//! [gateway]                 # run an S3 gateway
//! listen = "0.0.0.0:9000"
//! access_key_id = "..."
//! secret_access_key = "..."
//! # root_domain = "s3.example.com"  # also serve <bucket>.s3.example.com (default: none)
//! # abandoned_upload_days = 7       # abort uploads left open this long (0: never)
//! # lifecycle_day_secs = 86400      # length of a lifecycle "day" (shorten only for tests)
//! # anti_entropy_secs = 3600        # heal every node against its peers this often (0: never)
//! # small_object_threshold = 4096   # objects up to this size are coded with R data shards
//! #                                 # (two of six by default), not k (0: every object with k)
//! # sse_master_key_file = "/etc/tessera/sse-master.key"  # SSE-S3's master key: base64 of 32
//! #                                 # random bytes, the same on every gateway (or sse_master_key
//! #                                 # = "..." here); without one, SSE-S3 is refused (501)
//! # sse_c_without_tls = false       # take SSE-C keys over plain HTTP (only behind a TLS proxy)
//! # console_listen = "0.0.0.0:9001" # the operator's port: /metrics (default: none)
//! # metrics_public = false          # /metrics without the metrics token
//! # tcp_congestion_control = ""     # of client connections ("": the system's; "reno" for clients
//! #                                 # on this machine or LAN, where bbr's pacing only costs)
//!
//! # [gateway.connections] and [node.connections]: what one listener accepts (defaults shown)
//! # max_connections = 8192             # at once; also at most half the descriptor limit
//! # max_connections_per_address = 1024 # at once from one client address (raise it behind a proxy)
//! # header_timeout_secs = 20           # from a request head's first byte to its end
//! # idle_timeout_secs = 60             # no request in flight and nothing sent or received
//! # stall_timeout_secs = 60            # a body that stops arriving, a response not read
//! # max_header_bytes = 8192            # gateway: more is 400 RequestHeaderSectionTooLarge, node: 431
//! # max_headers = 100                  # header lines; more is refused with 431
//! ```
//!
//! The file holds secrets: `tessera dev` writes its configs readable by their owner only (0600),
//! and so should whoever writes one by hand.

use anyhow::Context;
use gateway::GatewayConfig;
use node_rpc::ClusterConfig;
use serde::{Deserialize, Serialize};
use std::path::Path;
use storage_node::NodeConfig;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Threads of the process's async runtime. Default: one per core, for a machine of its own.
    /// Processes that share a machine (`tessera dev`) do better with fewer each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_threads: Option<usize>,
    pub cluster: ClusterConfig,
    /// Present when this process runs a storage node.
    #[serde(default)]
    pub node: Option<NodeConfig>,
    /// Present when this process runs an S3 gateway.
    #[serde(default)]
    pub gateway: Option<GatewayConfig>,
}

impl Config {
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let config: Config =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        if config.node.is_none() && config.gateway.is_none() {
            anyhow::bail!(
                "{}: neither [node] nor [gateway] is configured",
                path.display()
            );
        }
        config.cluster.layout().context("the cluster's node list")?;
        if let Some(region) = &config.cluster.region {
            region.validate().context("[cluster.region]")?;
            if let Some(gateway) = config.gateway.as_ref().filter(|g| g.region != region.name) {
                anyhow::bail!(
                    "{}: the gateway serves region {} but [cluster.region] names {}",
                    path.display(),
                    gateway.region,
                    region.name
                );
            }
        }
        Ok(config)
    }

    /// Writes the config readable by its owner only: it holds the cluster secret, and a
    /// gateway's also the S3 secret key.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        write_private(path, toml::to_string_pretty(self)?.as_bytes())
    }
}

/// Writes a file readable by its owner only (mode 0600), for files that hold secrets.
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        // `mode` applies only to a file created now: one left by an older version may be 0644.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(bytes)
    };
    write().with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GATEWAY: &str = r#"
[cluster]
secret = "s"
nodes = [
  { id = "n1", zone = "z1", addr = "127.0.0.1:7001" },
  { id = "n2", zone = "z2", addr = "127.0.0.1:7002" },
  { id = "n3", zone = "z3", addr = "127.0.0.1:7003" },
]
data_shards = 2
parity_shards = 1

[cluster.region]
name = "eu-west-1"
number = 2
replication_secret = "r"
peers = [ { name = "us-east-1", number = 1, endpoint = "http://127.0.0.1:9000" } ]

[gateway]
listen = "127.0.0.1:9100"
access_key_id = "a"
secret_access_key = "b"
"#;

    fn load(text: &str) -> anyhow::Result<Config> {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        Config::load(file.path())
    }

    #[test]
    fn a_regions_gateways_serve_its_name_and_its_numbers_are_its_own() {
        let serving = GATEWAY.replace(
            "secret_access_key = \"b\"",
            "secret_access_key = \"b\"\nregion = \"eu-west-1\"",
        );
        assert_eq!(load(&serving).unwrap().cluster.region.unwrap().number, 2);
        let error = load(GATEWAY).unwrap_err().to_string();
        assert!(
            error.contains("the gateway serves region us-east-1"),
            "{error}"
        );
        let clash = serving.replace("number = 1", "number = 2");
        let error = format!("{:#}", load(&clash).unwrap_err());
        assert!(error.contains("the same number"), "{error}");
    }

    #[test]
    fn the_small_object_threshold_defaults_to_4_kib_and_keeps_its_former_name() {
        let serving = GATEWAY.replace(
            "secret_access_key = \"b\"",
            "secret_access_key = \"b\"\nregion = \"eu-west-1\"",
        );
        let threshold = |text: &str| load(text).unwrap().gateway.unwrap().small_object_threshold;
        assert_eq!(threshold(&serving), 4096);
        for key in ["small_object_threshold", "replicate_threshold"] {
            let set = serving.replace("region = ", &format!("{key} = 0\nregion = "));
            assert_eq!(threshold(&set), 0, "{key}");
        }
    }
}
