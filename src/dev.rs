//! `tessera dev`: a whole cluster on this machine, each node and the gateway a child process of
//! this one, with data, configs and logs under one folder. Re-running it on the same folder
//! reuses the cluster (same secret, nodes and ports).

use crate::config::{write_private, Config};
use crate::LogFormat;
use anyhow::Context;
use clap::ValueEnum;
use gateway::{GatewayConfig, SecretKey};
use node_rpc::cluster::{PeerRegion, RegionConfig};
use node_rpc::protocol::ClusterSecret;
use node_rpc::ClusterConfig;
use placement::NodeInfo;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use storage_node::NodeConfig;
use tokio::process::{Child, Command};
use tokio::signal::unix::{signal, SignalKind};

const START_TIMEOUT: Duration = Duration::from_secs(60);
/// The lowest port `tessera dev` gives a node (the S3 port is a flag).
const FIRST_PORT: u16 = 10_000;

#[derive(clap::Args)]
pub struct DevArgs {
    /// Folder for every node's data, the configs and the logs.
    #[arg(long, default_value = "tessera-data")]
    data_dir: PathBuf,
    /// Port of the S3 endpoint (on 127.0.0.1).
    #[arg(long, default_value_t = 9000)]
    s3_port: u16,
    /// Port of the operator's endpoint: the web console, and Prometheus metrics on `/metrics`
    /// (default: the S3 port plus one).
    #[arg(long)]
    console_port: Option<u16>,
    /// PEM certificate for the S3 endpoint: serve HTTPS instead of HTTP.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// With `--regions`: the PEM file of the CA that signed `--tls-cert`, which each region
    /// checks the others' endpoints against (default: the certificate itself, which then must
    /// be self-signed).
    #[arg(long, requires = "tls_cert")]
    tls_ca: Option<PathBuf>,
    /// PEM certificate the storage nodes serve TLS with (one for all: it must name 127.0.0.1),
    /// its key, and the CA file the gateway and the nodes check it against. New clusters only.
    #[arg(long, requires_all = ["node_tls_key", "node_tls_ca"])]
    node_tls_cert: Option<PathBuf>,
    #[arg(long, requires = "node_tls_cert")]
    node_tls_key: Option<PathBuf>,
    #[arg(long, requires = "node_tls_cert")]
    node_tls_ca: Option<PathBuf>,
    /// Longest wait for a storage node, in milliseconds (default 10000).
    #[arg(long)]
    rpc_timeout_ms: Option<u64>,
    /// First port of the storage nodes of a new cluster: the nodes listen on it and the ports
    /// after it, in zone order (default: free ports picked at random below the kernel's
    /// ephemeral range). A fixed block suits firewall rules, and test harnesses that run several
    /// clusters at once and must not hand one cluster's ports to another.
    #[arg(long)]
    node_ports: Option<u16>,
    /// Regions, each a cluster of its own (its zones and nodes as below) with its own S3
    /// endpoint, replicating to each other; named `us-east-1`, `eu-west-1`, ... unless
    /// `--region-names` names them. Each region's S3 and console ports follow the previous
    /// region's (S3 port + 2 per region), and its nodes' ports follow the previous region's
    /// nodes' with `--node-ports`.
    #[arg(long, default_value_t = 1)]
    regions: usize,
    /// The regions' names, comma-separated (as many as `--regions`).
    #[arg(long)]
    region_names: Option<String>,
    /// With `--regions`: a GET or HEAD of an object missing in a region asks the others
    /// (`read_fallback` in `[cluster.region]`).
    #[arg(long)]
    read_fallback: bool,
    /// Zones of a new cluster (an existing data dir keeps its own).
    #[arg(long, default_value_t = 3)]
    zones: usize,
    /// Storage nodes per zone of a new cluster. With more than two, a zone's loss leaves
    /// substitutes that keep the writes of its nodes (hinted handoff).
    #[arg(long, default_value_t = 2)]
    nodes_per_zone: usize,
    /// Holders that must commit a write before it is acknowledged (default k+1). k keeps writes
    /// going with m holders down, at the price of no redundancy for them until they are healed.
    #[arg(long)]
    write_quorum: Option<usize>,
    /// Length in seconds of a lifecycle "day" (default 86400; tests shorten it).
    #[arg(long, default_value_t = 86_400)]
    lifecycle_day_secs: u64,
    /// Seconds between anti-entropy rounds, which heal every node where it differs from the
    /// other holders (default 3600; 0: off).
    #[arg(long, default_value_t = 3600)]
    anti_entropy_secs: u64,
    /// Access key id clients sign with (generated when unset).
    #[arg(long, env = "TESSERA_ACCESS_KEY_ID", hide_env_values = true)]
    access_key_id: Option<String>,
    /// Secret access key clients sign with (generated when unset).
    #[arg(long, env = "TESSERA_SECRET_ACCESS_KEY", hide_env_values = true)]
    secret_access_key: Option<String>,
}

/// The names regions get when `--regions` asks for more than one and `--region-names` names none.
const DEFAULT_REGION_NAMES: [&str; 4] = ["us-east-1", "eu-west-1", "ap-southeast-1", "sa-east-1"];

/// What every region of a dev cluster shares: one access key works in each.
struct Shared {
    access_key_id: String,
    secret_access_key: String,
    sse_master_key: SecretKey,
    replication_secret: ClusterSecret,
}

/// One started region: its processes and where it answers.
struct Started {
    name: String,
    children: Vec<(String, Child)>,
    cluster: ClusterConfig,
    gateway: GatewayConfig,
    console: SocketAddr,
    prometheus: PathBuf,
}

pub async fn run(args: DevArgs, log_format: LogFormat) -> anyhow::Result<()> {
    let data_dir = absolute(&args.data_dir)?;
    let names = region_names(&args)?;
    let several = names.len() > 1;
    // A region's folder: the data dir itself for one region (as before regions existed).
    let region_dir = |name: &str| match several {
        true => data_dir.join(name),
        false => data_dir.clone(),
    };
    let previous: Vec<Option<Config>> = names
        .iter()
        .map(|name| {
            let path = region_dir(name).join("config").join("gateway.toml");
            path.exists().then(|| Config::load(&path)).transpose()
        })
        .collect::<anyhow::Result<_>>()?;
    let old_gateway = previous.iter().flatten().find_map(|p| p.gateway.clone());
    let old_region = previous
        .iter()
        .flatten()
        .find_map(|p| p.cluster.region.clone());
    let shared = Shared {
        access_key_id: (args.access_key_id.clone())
            .or_else(|| old_gateway.as_ref().map(|g| g.access_key_id.clone()))
            .unwrap_or_else(|| format!("TESS{}", hex::encode_upper(rand::random::<[u8; 8]>()))),
        secret_access_key: (args.secret_access_key.clone())
            .or_else(|| old_gateway.as_ref().map(|g| g.secret_access_key.0.clone()))
            .unwrap_or_else(|| hex::encode(rand::random::<[u8; 20]>())),
        sse_master_key: (old_gateway.as_ref().and_then(|g| g.sse_master_key.clone()))
            .unwrap_or_else(|| {
                use base64::Engine;
                let key = rand::random::<[u8; 32]>();
                SecretKey(base64::engine::general_purpose::STANDARD.encode(key))
            }),
        replication_secret: old_region
            .map(|r| r.replication_secret)
            .unwrap_or_else(|| ClusterSecret::new(hex::encode(rand::random::<[u8; 32]>()))),
    };
    let mut regions = Vec::new();
    for (i, (name, previous)) in names.iter().zip(previous).enumerate() {
        let region = several.then(|| region_config(&args, &names, i, &shared));
        let dir = region_dir(name);
        let started = start_region(&args, &dir, i, name, region, previous, &shared, log_format);
        regions.push(started.await?);
    }

    let scheme = if args.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    let first = &regions[0].cluster;
    let mut zones: Vec<&str> = first.nodes.iter().map(|n| n.zone.as_str()).collect();
    zones.dedup();
    let region_count = match several {
        true => format!("{} regions ({}), each of", names.len(), names.join(", ")),
        false => "1 region,".into(),
    };
    println!(
        "Tessera dev cluster: {region_count} {} zones, {} storage nodes, erasure coding {}+{}, write quorum {}",
        zones.len(),
        first.nodes.len(),
        first.data_shards,
        first.parity_shards,
        first.write_quorum()
    );
    println!("  data dir:    {}", data_dir.display());
    if !several {
        println!("  logs:        {}", data_dir.join("logs").display());
        println!("  region:      {}", regions[0].gateway.region);
    }
    println!("  access key:  {}", shared.access_key_id);
    println!("  secret key:  {}", shared.secret_access_key);
    let label = |region: &Started| match several {
        true => format!(" ({})", region.name),
        false => String::new(),
    };
    for region in &regions {
        println!(
            "  prometheus{}: {} (scrape config with the metrics token)",
            label(region),
            region.prometheus.display()
        );
    }
    for region in &regions {
        let label = label(region);
        println!("S3 endpoint{label}: {scheme}://{}", region.gateway.listen);
        println!("Console{label}: {scheme}://{}", region.console);
        println!("Metrics{label}: {scheme}://{}/metrics", region.console);
    }
    println!("Stop with Ctrl-C.");
    let children: Vec<(String, Child)> = (regions.into_iter())
        .flat_map(|r| {
            let prefix = match several {
                true => format!("{} ", r.name),
                false => String::new(),
            };
            (r.children.into_iter()).map(move |(name, child)| (format!("{prefix}{name}"), child))
        })
        .collect();

    // Reap children as they exit (a killed node must not linger as a zombie), and say so.
    let mut pids = Vec::new();
    let mut exits = Vec::new();
    for (name, mut child) in children {
        pids.push(child.id());
        exits.push(tokio::spawn(async move {
            let status = child.wait().await;
            eprintln!("{name} exited: {status:?}");
            (name, child)
        }));
    }
    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = interrupt.recv() => {}
    }
    for pid in pids.into_iter().flatten() {
        // SIGTERM first so that processes end cleanly; RocksDB's WAL makes SIGKILL safe too.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    }
    for exit in exits {
        if tokio::time::timeout(Duration::from_secs(10), exit)
            .await
            .is_err()
        {
            eprintln!("a process did not stop in time; it is killed as this one exits");
        }
    }
    Ok(())
}

/// The region names: `--region-names`, or the first `--regions` of `DEFAULT_REGION_NAMES`.
fn region_names(args: &DevArgs) -> anyhow::Result<Vec<String>> {
    if let Some(names) = &args.region_names {
        let names: Vec<String> = names.split(',').map(|n| n.trim().to_string()).collect();
        anyhow::ensure!(
            names.len() == args.regions,
            "--region-names names {} regions, --regions asks for {}",
            names.len(),
            args.regions
        );
        return Ok(names);
    }
    anyhow::ensure!(
        (1..=DEFAULT_REGION_NAMES.len()).contains(&args.regions),
        "--regions is 1 to {} without --region-names",
        DEFAULT_REGION_NAMES.len()
    );
    Ok(DEFAULT_REGION_NAMES[..args.regions]
        .iter()
        .map(|n| n.to_string())
        .collect())
}

/// The S3 port of region `i`: each region's S3 and console ports follow the one before's.
fn s3_port(args: &DevArgs, i: usize) -> u16 {
    args.s3_port.wrapping_add(2 * i as u16)
}

/// The console port of region `i`: `--console-port` and the ones after it, else the port after
/// the region's S3 port.
fn console_port(args: &DevArgs, i: usize) -> u16 {
    match args.console_port {
        Some(port) => port.wrapping_add(2 * i as u16),
        None => s3_port(args, i).wrapping_add(1),
    }
}

/// Region `i`'s `[cluster.region]`: numbered from 1 in the order given, every other region a
/// peer at its S3 endpoint.
fn region_config(args: &DevArgs, names: &[String], i: usize, shared: &Shared) -> RegionConfig {
    let scheme = if args.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    RegionConfig {
        name: names[i].clone(),
        number: i as u8 + 1,
        replication_secret: shared.replication_secret.clone(),
        peers: (names.iter().enumerate())
            .filter(|(j, _)| *j != i)
            .map(|(j, name)| PeerRegion {
                name: name.clone(),
                number: j as u8 + 1,
                endpoint: format!("{scheme}://127.0.0.1:{}", s3_port(args, j)),
                ca_file: (args.tls_ca.as_ref().or(args.tls_cert.as_ref()))
                    .and_then(|p| absolute(p).ok()),
            })
            .collect(),
        read_fallback: args.read_fallback,
    }
}

/// Starts one region's nodes and gateway under `data_dir`.
#[allow(clippy::too_many_arguments)]
async fn start_region(
    args: &DevArgs,
    data_dir: &Path,
    index: usize,
    name: &str,
    region: Option<RegionConfig>,
    previous: Option<Config>,
    shared: &Shared,
    log_format: LogFormat,
) -> anyhow::Result<Started> {
    let config_dir = data_dir.join("config");
    let log_dir = data_dir.join("logs");
    for dir in [&config_dir, &log_dir, &data_dir.join("gateway")] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let gateway_path = config_dir.join("gateway.toml");
    let node_ports = (args.node_ports)
        .map(|first| first.wrapping_add((index * args.zones * args.nodes_per_zone) as u16));
    let mut cluster = match &previous {
        Some(p) => p.cluster.clone(),
        None => new_cluster(
            args.zones,
            args.nodes_per_zone,
            node_ports,
            &gateway_ports(args),
        )?,
    };
    if previous.is_none() {
        cluster.tls_ca = args.node_tls_ca.as_ref().map(|p| absolute(p)).transpose()?;
    }
    cluster.region = region;
    let node_tls_cert = args
        .node_tls_cert
        .as_ref()
        .map(|p| absolute(p))
        .transpose()?;
    let node_tls_key = args
        .node_tls_key
        .as_ref()
        .map(|p| absolute(p))
        .transpose()?;
    if let Some(ms) = args.rpc_timeout_ms {
        cluster.rpc_timeout_ms = ms;
    }
    if args.write_quorum.is_some() {
        cluster.write_quorum = args.write_quorum;
    }
    cluster.layout().context("the cluster's layout")?;
    let s3_port = s3_port(args, index);
    let gateway = GatewayConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], s3_port)),
        region: name.into(),
        // Browsers and curl resolve `<bucket>.localhost` to the loopback address: virtual-hosted style.
        root_domain: Some("localhost".into()),
        access_key_id: shared.access_key_id.clone(),
        secret_access_key: SecretKey(shared.secret_access_key.clone()),
        tls_cert: args.tls_cert.as_ref().map(|p| absolute(p)).transpose()?,
        tls_key: args.tls_key.as_ref().map(|p| absolute(p)).transpose()?,
        inline_threshold: 64 * 1024,
        small_object_threshold: 4096,
        block_size: 256 * 1024,
        heal_bytes_per_sec: 64 << 20,
        abandoned_upload_days: 7,
        lifecycle_day_secs: args.lifecycle_day_secs,
        anti_entropy_secs: args.anti_entropy_secs,
        sse_master_key: Some(shared.sse_master_key.clone()),
        sse_master_key_file: None,
        sse_c_without_tls: false,
        connections: listener::Limits::default(),
        // Its clients are on this machine, where pacing only costs (see the field).
        tcp_congestion_control: "reno".to_string(),
        console_listen: Some(SocketAddr::from((
            [127, 0, 0, 1],
            console_port(args, index),
        ))),
        metrics_public: false,
        console_idle_secs: 3600,
        console_session_secs: 43_200,
    };

    let mut children = Vec::new();
    for node in &cluster.nodes {
        let path = config_dir.join(format!("{}.toml", node.id));
        let mut node_config = NodeConfig::new(node.id.clone(), data_dir.join(&node.id));
        if cluster.tls_ca.is_some() {
            let old = Config::load(&path).ok().and_then(|c| c.node);
            node_config.tls_cert = node_tls_cert
                .clone()
                .or_else(|| old.as_ref()?.tls_cert.clone());
            node_config.tls_key = node_tls_key
                .clone()
                .or_else(|| old.as_ref()?.tls_key.clone());
        }
        Config {
            // Seven processes share this machine's cores: with one runtime thread per node the
            // nodes contend less with each other and the gateway (4 KiB GETs at 32 in flight:
            // 6,280 a second instead of 5,200-5,600, see docs/performance.md).
            worker_threads: Some(1),
            cluster: cluster.clone(),
            node: Some(node_config),
            gateway: None,
        }
        .save(&path)?;
        children.push((
            node.id.clone(),
            spawn(&path, &log_dir.join(format!("{}.log", node.id)), log_format)?,
        ));
    }
    for (node, (id, child)) in cluster.nodes.iter().zip(&mut children) {
        wait_for_port(node.addr.parse()?, id, child).await?;
    }
    Config {
        worker_threads: None,
        cluster: cluster.clone(),
        node: None,
        gateway: Some(gateway.clone()),
    }
    .save(&gateway_path)?;
    let mut gateway_child = spawn(&gateway_path, &log_dir.join("gateway.log"), log_format)?;
    if let Some(pid) = gateway_child.id() {
        std::fs::write(data_dir.join("gateway").join("pid"), pid.to_string())?;
    }
    wait_for_port(gateway.listen, "gateway", &mut gateway_child).await?;
    children.push(("gateway".into(), gateway_child));
    let console = gateway
        .console_listen
        .context("dev gateways have a console port")?;
    let prometheus = data_dir.join("prometheus.yml");
    write_private(&prometheus, prometheus_config(&cluster, console).as_bytes())?;

    Ok(Started {
        name: name.to_string(),
        children,
        cluster,
        gateway,
        console,
        prometheus,
    })
}

/// A Prometheus scrape config for the gateway's console port and every node, with the bearer
/// token their `/metrics` ask for: `prometheus --config.file` of it watches the dev cluster.
fn prometheus_config(cluster: &ClusterConfig, console: SocketAddr) -> String {
    let token = cluster.secret.metrics_token();
    let node_scheme = if cluster.tls_ca.is_some() {
        "https"
    } else {
        "http"
    };
    let mut tls = String::new();
    if let Some(ca) = &cluster.tls_ca {
        tls = format!("    tls_config:\n      ca_file: '{}'\n", ca.display());
    }
    let nodes: Vec<String> = cluster
        .nodes
        .iter()
        .map(|n| format!("'{}'", n.addr))
        .collect();
    format!(
        "# Written by `tessera dev`: scrapes this cluster's gateway and storage nodes.\n\
         global:\n  scrape_interval: 5s\n\
         scrape_configs:\n\
         \x20 - job_name: tessera-gateway\n\
         \x20   authorization:\n      credentials: '{token}'\n\
         \x20   static_configs:\n      - targets: ['{console}']\n\
         \x20 - job_name: tessera-node\n\
         \x20   scheme: {node_scheme}\n{tls}\
         \x20   authorization:\n      credentials: '{token}'\n\
         \x20   static_configs:\n      - targets: [{}]\n",
        nodes.join(", ")
    )
}

/// Every region's S3 and console ports: the gateways listen on them only after the nodes start,
/// so a node picking its port at random must be kept off them.
fn gateway_ports(args: &DevArgs) -> Vec<u16> {
    (0..args.regions)
        .flat_map(|i| [s3_port(args, i), console_port(args, i)])
        .collect()
}

fn new_cluster(
    zones: usize,
    nodes_per_zone: usize,
    first_port: Option<u16>,
    reserved: &[u16],
) -> anyhow::Result<ClusterConfig> {
    let mut nodes = Vec::new();
    for zone in 1..=zones {
        for n in 1..=nodes_per_zone {
            let port = match first_port {
                Some(first) => u16::try_from(usize::from(first) + nodes.len())
                    .map_err(|_| anyhow::anyhow!("--node-ports {first} leaves too few ports"))?,
                None => free_port(&nodes, reserved)?,
            };
            nodes.push(NodeInfo {
                id: format!("z{zone}-n{n}"),
                zone: format!("z{zone}"),
                addr: format!("127.0.0.1:{port}"),
                weight: 100,
            });
        }
    }
    Ok(ClusterConfig {
        secret: ClusterSecret::new(hex::encode(rand::random::<[u8; 32]>())),
        data_shards: 4,
        parity_shards: 2,
        write_quorum: None,
        shard_count: 256,
        rpc_timeout_ms: 10_000,
        tls_ca: None,
        nodes,
        region: None,
    })
}

/// A free port below the kernel's ephemeral range that none of `taken` has and that is not
/// `reserved`. A port from that range can be taken as the local end of any outgoing connection
/// while its node is down (each large fragment transfer opens one), and the restarted node could
/// then not listen on it again. A port is free until its node listens: two nodes given the same
/// one would be one process answering for both; a node given a gateway's port would stop that
/// gateway from starting.
fn free_port(taken: &[NodeInfo], reserved: &[u16]) -> anyhow::Result<u16> {
    use rand::Rng;
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let below = ephemeral_low.max(FIRST_PORT + 1_000);
    for _ in 0..1_000 {
        let port = rand::thread_rng().gen_range(FIRST_PORT..below);
        let addr = format!("127.0.0.1:{port}");
        if reserved.contains(&port) || taken.iter().any(|n| n.addr == addr) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    anyhow::bail!("no free port between {FIRST_PORT} and {below}")
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    Ok(std::env::current_dir()?.join(path))
}

/// Starts `tessera server --config path`, logging to `log`. The child is killed if this process
/// dies, so that an interrupted dev cluster leaves no orphans holding its ports.
fn spawn(config: &Path, log: &Path, log_format: LogFormat) -> anyhow::Result<Child> {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let mut command = std::process::Command::new(std::env::current_exe()?);
    command
        .arg("server")
        .arg("--config")
        .arg(config)
        .env(
            "TESSERA_LOG_FORMAT",
            log_format
                .to_possible_value()
                .expect("no variant is skipped")
                .get_name(),
        )
        .stdin(std::process::Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file);
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    Command::from(command)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting the process for {}", config.display()))
}

/// Waits until `child` listens on `addr`. A child that exited fails the start even when
/// something answers there: another process holding the port would otherwise be taken for it.
async fn wait_for_port(addr: SocketAddr, what: &str, child: &mut Child) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("{what} exited ({status}) before listening on {addr}; see its log");
        }
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if start.elapsed() > START_TIMEOUT {
            anyhow::bail!("{what} did not start listening on {addr}; see its log");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_are_kept_off_reserved_ports() {
        let reserved: Vec<u16> = (FIRST_PORT..u16::MAX).step_by(2).collect();
        let cluster = new_cluster(3, 2, None, &reserved).unwrap();
        for node in &cluster.nodes {
            let port: u16 = node.addr.rsplit(':').next().unwrap().parse().unwrap();
            assert!(!reserved.contains(&port), "{} was reserved", node.addr);
        }
    }
}
