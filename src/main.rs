//! The `tessera` command: run a storage node or gateway from a config file, or a whole local
//! cluster for development.

mod bench;
mod config;
mod dev;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// glibc's allocator took about a tenth of the gateway's and the nodes' CPU on small requests
/// (arena locking and consolidation, page faults on freshly mapped fragment buffers).
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
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TESSERA_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        match cli.command {
            Command::Server { config } => server(config).await,
            Command::Dev(args) => dev::run(args).await,
            Command::Bench(args) => bench::run(args).await,
        }
    })
}

async fn server(path: PathBuf) -> anyhow::Result<()> {
    let config = config::Config::load(&path)?;
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
