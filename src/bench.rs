//! `tessera bench`: a load generator for any S3 endpoint. C tasks on a multi-threaded runtime
//! share one keep-alive connection pool and one payload buffer, so one process can keep a whole
//! cluster busy; each operation's latency (request sent to last body byte) goes into a histogram.

use crate::endpoint::EndpointArgs;
use anyhow::{bail, Context};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::BodyExt;
use rand::RngCore;
use serde::Serialize;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tessera::client::{object_path, BodySigning, Client};

const MIB: f64 = 1024.0 * 1024.0;
const LIST_PAGE: u32 = 1000;
const MAX_ERROR_SAMPLES: usize = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// Write new objects.
    Put,
    /// Write the objects first (not measured), then read them.
    Get,
    /// 30% PUT (overwrites) and 70% GET over a prepared set of objects.
    Mixed,
    /// ListObjectsV2 pages of 1000 over the bucket (under --prefix), walked over and over.
    List,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Put => "put",
            Workload::Get => "get",
            Workload::Mixed => "mixed",
            Workload::List => "list",
        }
    }
}

#[derive(clap::Args)]
pub struct BenchArgs {
    #[command(flatten)]
    endpoint: EndpointArgs,
    /// Bucket to use; created if missing (a key that may not create it must be granted it).
    #[arg(long, default_value = "tessera-bench")]
    bucket: String,
    #[arg(long, value_enum, default_value = "put")]
    workload: Workload,
    /// Object size: bytes, or with a unit (4KiB, 1MiB, 64MiB, 1GiB; K, M, G mean the same).
    #[arg(long, default_value = "1MiB", value_parser = parse_size)]
    size: u64,
    /// Operations to do (for `list`: keys to list). Default 1000, or unlimited with --duration.
    #[arg(long)]
    objects: Option<u64>,
    /// Operations in flight.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Stop after this many seconds (or after --objects operations, whichever comes first).
    #[arg(long)]
    duration: Option<f64>,
    /// Start at most this many operations a second, evenly spaced: a steady load rather than
    /// as much as --concurrency allows (which then only caps the operations in flight).
    /// Latency counts from each operation's start, not from when it was due.
    #[arg(long)]
    rate: Option<f64>,
    /// Objects written before a get or mixed run (default: --objects, at most
    /// max(256 MiB / size, 2 x concurrency) and at most 10,000). With `list`: write this many first.
    #[arg(long)]
    keys: Option<u64>,
    /// Key prefix; each run writes under PREFIX<run id>/.
    #[arg(long, default_value = "bench/")]
    prefix: String,
    /// Sign each PUT body's SHA-256 (computed once) instead of sending UNSIGNED-PAYLOAD.
    #[arg(long)]
    sign_payload: bool,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// Parses `4096`, `4KiB`, `1MiB`, `64M`, `1GiB` (units are powers of 1024).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size like 4KiB, 1MiB or 65536"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        other => return Err(format!("unknown size unit {other:?}: use KiB, MiB or GiB")),
    };
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// What every task shares.
struct Run {
    client: Client,
    bucket: String,
    /// PREFIX<run id>/
    keys_prefix: String,
    list_prefix: String,
    payload: Bytes,
    signing: BodySigning,
    workload: Workload,
    keys: u64,
    limit: u64,
    deadline: Option<Instant>,
    /// With `--rate`: when the measured phase began and the operations a second.
    pace: Option<(Instant, f64)>,
    next: AtomicU64,
    ops: AtomicU64,
    bytes: AtomicU64,
    listed: AtomicU64,
    errors: AtomicU64,
    samples: Mutex<Vec<String>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Put,
    Get,
    List,
}

const OPS: [Op; 3] = [Op::Put, Op::Get, Op::List];

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Put => "PUT",
            Op::Get => "GET",
            Op::List => "LIST",
        }
    }
}

/// One operation type's results, per task and then merged.
struct OpStats {
    /// Latency of successful operations, in microseconds.
    latency: Histogram<u64>,
    count: u64,
    errors: u64,
    bytes: u64,
    /// Keys listed (LIST only).
    keys: u64,
}

impl OpStats {
    fn new() -> OpStats {
        OpStats {
            latency: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds"),
            count: 0,
            errors: 0,
            bytes: 0,
            keys: 0,
        }
    }

    fn merge(&mut self, other: &OpStats) {
        self.latency
            .add(&other.latency)
            .expect("histograms of the same bounds");
        self.count += other.count;
        self.errors += other.errors;
        self.bytes += other.bytes;
        self.keys += other.keys;
    }
}

type Stats = [OpStats; 3];

fn new_stats() -> Stats {
    [OpStats::new(), OpStats::new(), OpStats::new()]
}

/// What one operation moved.
#[derive(Default)]
struct Done {
    bytes: u64,
    keys: u64,
}

impl Run {
    fn key(&self, i: u64) -> String {
        format!("{}{i:08}", self.keys_prefix)
    }

    /// The next operation's number, or None when the run is over.
    fn claim(&self) -> Option<u64> {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        if self.workload == Workload::List {
            return (self.listed.load(Relaxed) < self.limit).then_some(0);
        }
        let i = self.next.fetch_add(1, Relaxed);
        (i < self.limit).then_some(i)
    }

    fn error(&self, op: Op, e: &anyhow::Error) {
        self.errors.fetch_add(1, Relaxed);
        let mut samples = self.samples.lock().unwrap();
        if samples.len() < MAX_ERROR_SAMPLES {
            samples.push(format!("{}: {e:#}", op.name()));
        }
    }

    async fn put(&self, key: &str) -> anyhow::Result<Done> {
        let reply = self
            .client
            .send_signed(
                "PUT",
                &object_path(&self.bucket, key),
                &[],
                self.payload.clone(),
                self.signing,
            )
            .await?;
        if !reply.is_success() {
            bail!("{key}: {} {}", reply.status, reply.code());
        }
        Ok(Done {
            bytes: self.payload.len() as u64,
            keys: 0,
        })
    }

    /// Streams the body and counts it, without keeping it.
    async fn get(&self, key: &str) -> anyhow::Result<Done> {
        let resp = self
            .client
            .request(
                "GET",
                &object_path(&self.bucket, key),
                &[],
                Bytes::new(),
                BodySigning::Hashed,
            )
            .await?;
        let status = resp.status();
        let mut body = resp.into_body();
        let mut bytes = 0u64;
        while let Some(frame) = body.frame().await {
            if let Some(data) = frame.context("reading the body")?.data_ref() {
                bytes += data.len() as u64;
            }
        }
        if !status.is_success() {
            bail!("{key}: {status}");
        }
        if bytes != self.payload.len() as u64 {
            bail!("{key}: {bytes} bytes instead of {}", self.payload.len());
        }
        Ok(Done { bytes, keys: 0 })
    }

    async fn list(&self, token: &mut Option<String>) -> anyhow::Result<Done> {
        let page = self
            .client
            .list_v2(&self.bucket, &self.list_prefix, token.as_deref(), LIST_PAGE)
            .await?;
        if page.status != 200 {
            bail!("{} {}", page.status, page.reply.code());
        }
        *token = page.next_token;
        self.listed.fetch_add(page.keys.len() as u64, Relaxed);
        Ok(Done {
            bytes: page.reply.body.len() as u64,
            keys: page.keys.len() as u64,
        })
    }

    async fn one(&self, i: u64, token: &mut Option<String>) -> (Op, anyhow::Result<Done>) {
        match self.workload {
            Workload::Put => (Op::Put, self.put(&self.key(i)).await),
            Workload::Get => (Op::Get, self.get(&self.key(i % self.keys)).await),
            Workload::Mixed if i % 10 < 3 => (Op::Put, self.put(&self.key(i % self.keys)).await),
            // A multiplicative hash spreads reads over the set, away from the keys being written.
            Workload::Mixed => {
                let k = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % self.keys;
                (Op::Get, self.get(&self.key(k)).await)
            }
            Workload::List => (Op::List, self.list(token).await),
        }
    }

    async fn worker(self: Arc<Run>) -> Stats {
        let mut stats = new_stats();
        let mut token = None;
        while let Some(i) = self.claim() {
            if let Some((began, rate)) = self.pace {
                let due = began + Duration::from_secs_f64(i as f64 / rate);
                tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
            }
            let start = Instant::now();
            let (op, result) = self.one(i, &mut token).await;
            let s = &mut stats[op as usize];
            match result {
                Ok(done) => {
                    s.latency
                        .saturating_record(start.elapsed().as_micros().max(1) as u64);
                    s.count += 1;
                    s.bytes += done.bytes;
                    s.keys += done.keys;
                    self.ops.fetch_add(1, Relaxed);
                    self.bytes.fetch_add(done.bytes, Relaxed);
                }
                Err(e) => {
                    s.errors += 1;
                    self.error(op, &e);
                }
            }
        }
        stats
    }
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    anyhow::ensure!(
        args.rate.is_none_or(|r| r > 0.0 && r.is_finite()),
        "--rate must be a number of operations a second above 0"
    );
    anyhow::ensure!(
        args.rate.is_none() || args.workload != Workload::List,
        "--rate paces put, get and mixed runs, not list"
    );
    anyhow::ensure!(
        args.size > 0 || args.workload == Workload::List,
        "--size must be at least 1 byte"
    );
    let client = args.endpoint.client()?;
    let created = client.create_bucket(&args.bucket).await?;
    // A key may use a bucket it was granted but may not create (BucketAlreadyExists,
    // AccessDenied): then the bucket must answer a HEAD.
    let usable = created.is_success()
        || created.code() == "BucketAlreadyOwnedByYou"
        || client
            .send("HEAD", &format!("/{}", args.bucket), &[], Bytes::new())
            .await?
            .is_success();
    if !usable {
        bail!(
            "creating bucket {}: {} {}",
            args.bucket,
            created.status,
            created.code()
        );
    }

    let limit = match (args.objects, args.duration) {
        (Some(n), _) => n,
        (None, Some(_)) => u64::MAX,
        (None, None) => 1000,
    };
    let keys = match args.workload {
        Workload::Put => 0,
        Workload::List => args.keys.unwrap_or(0),
        Workload::Get | Workload::Mixed => args
            .keys
            .unwrap_or_else(|| {
                let by_size = (256 << 20) / args.size.max(1);
                limit.min(by_size.max(2 * args.concurrency as u64).min(10_000))
            })
            .max(1),
    };
    let mut payload = vec![0u8; args.size as usize];
    rand::thread_rng().fill_bytes(&mut payload);
    let payload = Bytes::from(payload);
    let signing = if args.sign_payload {
        use sha2::Digest;
        let hash = hex::encode(sha2::Sha256::digest(&payload));
        BodySigning::Literal(Box::leak(hash.into_boxed_str()))
    } else {
        BodySigning::UNSIGNED
    };
    let run_id = hex::encode(rand::random::<[u8; 4]>());
    let mut run = Run {
        client,
        bucket: args.bucket.clone(),
        keys_prefix: format!("{}{run_id}/", args.prefix),
        list_prefix: args.prefix.clone(),
        payload,
        signing,
        workload: Workload::Put,
        keys,
        limit: keys,
        deadline: None,
        pace: None,
        next: AtomicU64::new(0),
        ops: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        listed: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        samples: Mutex::new(Vec::new()),
    };
    if keys > 0 {
        eprintln!(
            "writing {keys} objects of {} first (not measured)",
            human_size(args.size)
        );
        let (_, run_back) = phase(run, args.concurrency, "prepare").await;
        run = run_back;
        if run.errors.load(Relaxed) > 0 {
            print_samples(&run);
            bail!("preparing the objects failed");
        }
    }
    run.workload = args.workload;
    run.limit = limit;
    run.next = AtomicU64::new(0);
    run.ops = AtomicU64::new(0);
    run.bytes = AtomicU64::new(0);
    run.deadline = args
        .duration
        .map(|d| Instant::now() + Duration::from_secs_f64(d));
    run.pace = args.rate.map(|rate| (Instant::now(), rate));
    let (report, run) = phase(run, args.concurrency, "bench").await;
    let report = Report {
        workload: args.workload,
        endpoint: args.endpoint.endpoint,
        bucket: args.bucket,
        size: args.size,
        concurrency: args.concurrency,
        keys,
        ..report
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    print_samples(&run);
    let errors = run.errors.load(Relaxed);
    if errors > 0 {
        bail!("{errors} operations failed");
    }
    Ok(())
}

fn print_samples(run: &Run) {
    for sample in run.samples.lock().unwrap().iter() {
        eprintln!("error: {sample}");
    }
}

/// Runs `concurrency` workers until the run is over, with a progress line on stderr.
async fn phase(run: Run, concurrency: usize, what: &'static str) -> (Report, Run) {
    let run = Arc::new(run);
    let start = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    let progress = tokio::spawn(progress(run.clone(), done.clone(), start, what));
    let workers: Vec<_> = (0..concurrency)
        .map(|_| tokio::spawn(run.clone().worker()))
        .collect();
    let mut stats = new_stats();
    for worker in workers {
        let part = worker.await.expect("a bench task panicked");
        for (total, part) in stats.iter_mut().zip(&part) {
            total.merge(part);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    done.store(true, Relaxed);
    let _ = progress.await;
    let run = Arc::into_inner(run).expect("every task has ended");
    let operations = OPS
        .iter()
        .zip(&stats)
        .filter(|(_, s)| s.count + s.errors > 0)
        .map(|(op, s)| OpReport::new(*op, s, elapsed))
        .collect();
    let report = Report {
        workload: run.workload,
        endpoint: String::new(),
        bucket: String::new(),
        size: 0,
        concurrency,
        keys: 0,
        elapsed_s: elapsed,
        operations,
    };
    (report, run)
}

async fn progress(run: Arc<Run>, done: Arc<AtomicBool>, start: Instant, what: &str) {
    let tty = std::io::stderr().is_terminal();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    let (mut last_ops, mut last_bytes, mut last) = (0, 0, start);
    let mut printed = false;
    loop {
        ticker.tick().await;
        if done.load(Relaxed) {
            break;
        }
        let (ops, bytes, now) = (
            run.ops.load(Relaxed),
            run.bytes.load(Relaxed),
            Instant::now(),
        );
        let secs = now.duration_since(last).as_secs_f64();
        let line = format!(
            "{what} {:>4.0}s: {ops} ops, {:.0} ops/s, {:.1} MiB/s, {} errors",
            now.duration_since(start).as_secs_f64(),
            (ops - last_ops) as f64 / secs,
            (bytes - last_bytes) as f64 / MIB / secs,
            run.errors.load(Relaxed),
        );
        let mut err = std::io::stderr().lock();
        let _ = if tty {
            write!(err, "\r\x1b[2K{line}")
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
        printed = true;
        (last_ops, last_bytes, last) = (ops, bytes, now);
    }
    if tty && printed {
        eprintln!();
    }
}

#[derive(Serialize)]
struct Report {
    workload: Workload,
    endpoint: String,
    bucket: String,
    /// Object size in bytes.
    size: u64,
    concurrency: usize,
    /// Objects written before the measured phase.
    keys: u64,
    elapsed_s: f64,
    operations: Vec<OpReport>,
}

#[derive(Serialize)]
struct OpReport {
    op: &'static str,
    count: u64,
    errors: u64,
    bytes: u64,
    mib_per_s: f64,
    objects_per_s: f64,
    /// LIST only: keys listed, and per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    keys: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    keys_per_s: Option<f64>,
    latency_ms: Latency,
}

#[derive(Serialize)]
struct Latency {
    p50: f64,
    p90: f64,
    p99: f64,
    #[serde(rename = "p99.9")]
    p999: f64,
    max: f64,
}

impl OpReport {
    fn new(op: Op, s: &OpStats, elapsed: f64) -> OpReport {
        let ms = |q: f64| s.latency.value_at_quantile(q) as f64 / 1000.0;
        let list = op == Op::List;
        OpReport {
            op: op.name(),
            count: s.count,
            errors: s.errors,
            bytes: s.bytes,
            mib_per_s: s.bytes as f64 / MIB / elapsed,
            objects_per_s: s.count as f64 / elapsed,
            keys: list.then_some(s.keys),
            keys_per_s: list.then_some(s.keys as f64 / elapsed),
            latency_ms: Latency {
                p50: ms(0.5),
                p90: ms(0.9),
                p99: ms(0.99),
                p999: ms(0.999),
                max: s.latency.max() as f64 / 1000.0,
            },
        }
    }
}

impl Report {
    fn table(&self) -> String {
        let mut out = format!(
            "{} of {} objects, concurrency {}, {:.1} s, {} bucket {}\n",
            self.workload.name(),
            human_size(self.size),
            self.concurrency,
            self.elapsed_s,
            self.endpoint,
            self.bucket
        );
        out += &format!(
            "{:<5}{:>9}{:>8}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}\n",
            "op",
            "count",
            "errors",
            "MiB/s",
            "ops/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms"
        );
        for o in &self.operations {
            let l = &o.latency_ms;
            out += &format!(
                "{:<5}{:>9}{:>8}{:>10.1}{:>10.1}{:>10.2}{:>10.2}{:>10.2}{:>10.2}{:>10.2}\n",
                o.op,
                o.count,
                o.errors,
                o.mib_per_s,
                o.objects_per_s,
                l.p50,
                l.p90,
                l.p99,
                l.p999,
                l.max
            );
            if let (Some(keys), Some(rate)) = (o.keys, o.keys_per_s) {
                out += &format!("LIST: {keys} keys, {rate:.0} keys/s\n");
            }
        }
        out
    }
}

fn human_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("1gib"), Ok(1 << 30));
        assert_eq!(parse_size("65536"), Ok(65536));
        assert!(parse_size("4XB").is_err());
        assert!(parse_size("MiB").is_err());
    }

    #[test]
    fn sizes_print_in_their_unit() {
        assert_eq!(human_size(4096), "4 KiB");
        assert_eq!(human_size(64 << 20), "64 MiB");
        assert_eq!(human_size(1000), "1000 B");
    }
}
