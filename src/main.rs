//! The `tessera` command: run a storage node or gateway from a config file, or a whole local
//! cluster for development.

mod admin;
mod bench;
mod config;
mod dev;
mod endpoint;

use clap::{Parser, Subcommand};
use std::cell::Cell;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// glibc's allocator took about a tenth of the gateway's and the nodes' CPU on small requests
/// (arena locking and consolidation, page faults on freshly mapped fragment buffers).
/// Built with `no_thp`: by default mimalloc asks for transparent huge pages on its arenas, and a
/// 2 MiB page stays resident whole while any of it is in use; an idle node held 115-133 MiB after
/// a benchmark run with them, 82-89 MiB without.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "tessera",
    version,
    about = "An erasure-coded, S3-compatible object store"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How log lines are written: `text`, or `json` (one object per line, with the request's
    /// `trace_id` when tracing is on). Filter them with `TESSERA_LOG` (default `info`).
    #[arg(long, global = true, value_enum, env = "TESSERA_LOG_FORMAT", default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// `--log-format`; `tessera dev` hands it to its processes in `TESSERA_LOG_FORMAT`.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the roles (storage node, S3 gateway) that a config file names.
    Server {
        #[arg(long)]
        config: PathBuf,
    },
    /// Start a local cluster: one region, three zones of two storage nodes, 4+2 erasure coding,
    /// each node and the gateway in its own process.
    Dev(dev::DevArgs),
    /// Load an S3 endpoint with PUT, GET, mixed or LIST requests and report throughput and
    /// latency percentiles.
    Bench(bench::BenchArgs),
    /// Call the admin API: cluster status, access keys and their permissions.
    Admin(admin::AdminArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // A server's config is read first: it may size the runtime.
    let server_config = match &cli.command {
        Command::Server { config } => Some(config::Config::load(config)?),
        Command::Dev(_) | Command::Bench(_) | Command::Admin(_) => None,
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = server_config.as_ref().and_then(|c| c.worker_threads) {
        runtime.worker_threads(threads.max(1));
    }
    let runtime = runtime
        .enable_all()
        .on_thread_park(trim_allocator)
        .build()?;
    let service = match &server_config {
        Some(config) if config.gateway.is_some() => "tessera-gateway",
        Some(_) => "tessera-node",
        None => "tessera",
    };
    let filter = std::env::var("TESSERA_LOG").unwrap_or_else(|_| "info".into());
    let format = match cli.log_format {
        LogFormat::Text => telemetry::trace::LogFormat::Text,
        LogFormat::Json => telemetry::trace::LogFormat::Json,
    };
    runtime.block_on(async {
        // Inside the runtime: the trace exporter runs on it. Dropped last, it sends the spans
        // still waiting.
        let _tracing =
            telemetry::trace::init(service, &filter, format).map_err(anyhow::Error::msg)?;
        match cli.command {
            Command::Server { .. } => server(server_config.expect("loaded above")).await,
            Command::Dev(args) => dev::run(args, cli.log_format).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Admin(args) => admin::run(args).await,
        }
    })
}

extern "C" {
    /// mimalloc's own collection of the calling thread's free pages (part of the library linked
    /// in as the global allocator; declared here since `libmimalloc-sys` gates it behind a
    /// feature that needs another crate).
    fn mi_collect(force: bool);
}

/// How often a runtime thread going idle lets mimalloc return what it no longer uses.
const TRIM_EVERY: Duration = Duration::from_secs(1);

thread_local! {
    static LAST_TRIM: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Run when a runtime thread parks. mimalloc returns freed memory to the OS only from within its
/// own calls, so pages freed just before a node goes idle stayed resident for as long as it
/// stayed idle (10-15 MiB per node after a benchmark run). At most once per `TRIM_EVERY` per
/// thread, so it costs nothing measurable under load.
fn trim_allocator() {
    let now = Instant::now();
    let due = LAST_TRIM.with(|last| {
        let due = last.get().is_none_or(|at| now - at >= TRIM_EVERY);
        if due {
            last.set(Some(now));
        }
        due
    });
    if due {
        // SAFETY: mi_collect takes no pointers; it only walks the calling thread's own heap.
        unsafe { mi_collect(false) }
    }
}

async fn server(config: config::Config) -> anyhow::Result<()> {
    if let Some(region) = &config.cluster.region {
        node_rpc::record::Version::set_region(region.number);
    }
    let node = config
        .node
        .map(|node| tokio::spawn(storage_node::server::run(node, config.cluster.clone())));
    let gateway = config.gateway.map(|gw| {
        tokio::spawn(gateway::run(
            gw,
            config.cluster.clone(),
            |addr| tracing::info!(%addr, "S3 gateway listening"),
        ))
    });
    for task in [node, gateway].into_iter().flatten() {
        task.await??;
    }
    Ok(())
}
