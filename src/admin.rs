//! `tessera admin`: the admin API (`docs/admin-api.md`) from the command line, signed like any S3
//! request with the configured (administrator) key, as tables or, with `--json`, as the API's
//! JSON.

use crate::endpoint::EndpointArgs;
use anyhow::bail;
use bytes::Bytes;
use clap::Subcommand;
use serde_json::{json, Value};
use tessera::client::{query_value, Client, Reply};

#[derive(clap::Args)]
pub struct AdminArgs {
    #[command(flatten)]
    endpoint: EndpointArgs,
    /// Print the API's JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Every storage node: up or down, hints kept, scrubbing; and the links to peer regions.
    Status,
    /// Every storage node with its disk: used, size, free.
    Nodes,
    /// Every bucket with its objects and bytes (counted by every node: a scan of its records).
    Buckets,
    /// Each node's scrubber (the current or last pass, damage found), or start a pass.
    Scrub {
        #[command(subcommand)]
        action: Option<ScrubAction>,
    },
    /// Start healing a node (rebuild what it misses from the other holders), or with no node,
    /// show the heal in progress or last finished.
    Heal { node: Option<String> },
    /// The heals this gateway ran since it started (up to 20), newest first.
    Heals,
    /// This region's links to its peer regions (up or down, backlog, oldest change not yet
    /// delivered, throughput, last error), or where a bucket replicates.
    Replication {
        #[command(subcommand)]
        action: Option<ReplicationAction>,
    },
    /// Access keys and their permissions.
    #[command(subcommand)]
    Key(KeyCommand),
    /// The bearer token Prometheus sends to scrape `/metrics` on gateways and nodes.
    MetricsToken,
}

#[derive(Subcommand)]
enum ScrubAction {
    /// Start a scrub pass on a node now (one under way goes on).
    Start { node: String },
}

#[derive(Subcommand)]
enum ReplicationAction {
    /// The peer regions this region sends a bucket's changes to.
    Show { bucket: String },
    /// Send a bucket's changes to these peer regions only (none: keep it in this region).
    Set {
        bucket: String,
        regions: Vec<String>,
    },
    /// Send a bucket's changes to every peer region again (the default).
    Reset { bucket: String },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Create a key; its secret is printed this once.
    Create {
        name: String,
        /// The key may create buckets (and owns those it creates).
        #[arg(long)]
        create_bucket: bool,
    },
    /// Every key.
    List,
    /// One key and its permissions.
    Info { id: String },
    /// Delete a key: every gateway refuses it within seconds.
    Delete { id: String },
    /// Grant permissions: in a bucket (--read, --write, --owner) or to create buckets.
    Allow(Change),
    /// Take permissions back.
    Deny(Change),
}

#[derive(clap::Args)]
struct Change {
    id: String,
    #[arg(long)]
    bucket: Option<String>,
    #[arg(long)]
    read: bool,
    #[arg(long)]
    write: bool,
    #[arg(long)]
    owner: bool,
    #[arg(long)]
    create_bucket: bool,
}

impl Change {
    fn body(&self) -> Value {
        json!({
            "bucket": self.bucket,
            "read": self.read,
            "write": self.write,
            "owner": self.owner,
            "create_bucket": self.create_bucket,
        })
    }
}

pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    let client = args.endpoint.client()?;
    let call = |method: &'static str, path: String, body: Option<Value>| {
        let client = &client;
        async move { call(client, method, &path, body).await }
    };
    let (answer, show): (Value, fn(&Value)) = match args.command {
        AdminCommand::Status => (call("GET", "status".into(), None).await?, show_nodes),
        AdminCommand::Nodes => (call("GET", "status".into(), None).await?, show_disks),
        AdminCommand::Buckets => (call("GET", "buckets".into(), None).await?, show_buckets),
        AdminCommand::Scrub { action: None } => {
            (call("GET", "status".into(), None).await?, show_scrubs)
        }
        AdminCommand::Scrub {
            action: Some(ScrubAction::Start { node }),
        } => {
            let path = format!("scrub?node={}", query_value(&node));
            (call("POST", path, None).await?, show_scrub_started)
        }
        AdminCommand::MetricsToken => {
            (call("GET", "metrics-token".into(), None).await?, show_token)
        }
        AdminCommand::Heal { node: None } => (call("GET", "heal".into(), None).await?, show_heal),
        AdminCommand::Heals => (call("GET", "heals".into(), None).await?, show_heals),
        AdminCommand::Replication { action: None } => (
            call("GET", "replication".into(), None).await?,
            show_replication,
        ),
        AdminCommand::Replication {
            action: Some(action),
        } => {
            let (method, bucket, body) = match action {
                ReplicationAction::Show { bucket } => ("GET", bucket, None),
                ReplicationAction::Set { bucket, regions } => {
                    ("PUT", bucket, Some(json!({ "regions": regions })))
                }
                ReplicationAction::Reset { bucket } => ("DELETE", bucket, None),
            };
            let path = format!("buckets/{}/replication", query_value(&bucket));
            (call(method, path, body).await?, show_bucket_replication)
        }
        AdminCommand::Heal { node: Some(node) } => {
            let path = format!("heal?node={}", query_value(&node));
            (call("POST", path, None).await?, show_heal)
        }
        AdminCommand::Key(command) => match command {
            KeyCommand::Create {
                name,
                create_bucket,
            } => {
                let body = json!({ "name": name, "create_bucket": create_bucket });
                (call("POST", "keys".into(), Some(body)).await?, show_new_key)
            }
            KeyCommand::List => (call("GET", "keys".into(), None).await?, show_keys),
            KeyCommand::Info { id } => (call("GET", key_path(&id, "")?, None).await?, show_key),
            KeyCommand::Delete { id } => (
                call("DELETE", key_path(&id, "")?, None).await?,
                show_deleted,
            ),
            KeyCommand::Allow(change) => {
                let path = key_path(&change.id, "/allow")?;
                (call("POST", path, Some(change.body())).await?, show_key)
            }
            KeyCommand::Deny(change) => {
                let path = key_path(&change.id, "/deny")?;
                (call("POST", path, Some(change.body())).await?, show_key)
            }
        },
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        show(&answer);
    }
    Ok(())
}

fn show_token(answer: &Value) {
    println!("{}", answer["token"].as_str().unwrap_or_default());
}

/// The admin API path of a key; an id is letters and digits (one typed with others would
/// address some other path).
fn key_path(id: &str, action: &str) -> anyhow::Result<String> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        bail!("{id:?} is not an access key id (letters and digits)");
    }
    Ok(format!("keys/{id}{action}"))
}

/// One admin API call; an error answer becomes an error naming its S3 code and message.
async fn call(
    client: &Client,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let body = match body {
        Some(value) => Bytes::from(serde_json::to_vec(&value)?),
        None => Bytes::new(),
    };
    let headers: &[(&str, &str)] = if body.is_empty() {
        &[]
    } else {
        &[("content-type", "application/json")]
    };
    let reply: Reply = client
        .send(method, &format!("/_tessera/{path}"), headers, body)
        .await?;
    if !reply.is_success() {
        let message = tessera::client::xml_values(&reply.text(), "Message")
            .next()
            .unwrap_or_default()
            .to_string();
        bail!("{} {}: {}", reply.status, reply.code(), message);
    }
    Ok(serde_json::from_slice(&reply.body)?)
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// Prints rows under a header, each column as wide as its widest cell.
fn table(header: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row);
    }
}

fn permissions(grant: &Value) -> String {
    let letters: String = [("read", 'R'), ("write", 'W'), ("owner", 'O')]
        .iter()
        .map(|(name, letter)| if grant[name] == true { *letter } else { '-' })
        .collect();
    format!("{}:{letters}", text(&grant["bucket"]))
}

fn show_nodes(status: &Value) {
    let rows = status["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            vec![
                text(&n["id"]),
                text(&n["zone"]),
                text(&n["addr"]),
                if n["up"] == true { "up" } else { "DOWN" }.into(),
                text(&n["hints"]),
                text(&n["needs_heal"]),
                text(&n["scrub"]["passes"]),
            ]
        })
        .collect();
    table(
        &[
            "NODE",
            "ZONE",
            "ADDRESS",
            "STATE",
            "HINTS",
            "NEEDS-HEAL",
            "SCRUBS",
        ],
        rows,
    );
    if status["replication"]
        .as_array()
        .is_some_and(|l| !l.is_empty())
    {
        println!();
        show_links(&status["replication"]);
    }
}

fn show_disks(status: &Value) {
    let rows = status["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            let (free, size) = (n["disk_free_bytes"].as_u64(), n["disk_size_bytes"].as_u64());
            let (used, percent) = match (free, size) {
                (Some(free), Some(size)) if size > 0 => {
                    let used = size.saturating_sub(free);
                    (
                        bytes(Some(used)),
                        format!("{:.0}%", used as f64 * 100.0 / size as f64),
                    )
                }
                _ => ("-".into(), "-".into()),
            };
            vec![
                text(&n["id"]),
                text(&n["zone"]),
                text(&n["addr"]),
                if n["up"] == true { "up" } else { "DOWN" }.into(),
                used,
                bytes(free),
                bytes(size),
                percent,
                frame_formats(&n["frame_formats"]),
            ]
        })
        .collect();
    table(
        &[
            "NODE", "ZONE", "ADDRESS", "STATE", "USED", "FREE", "SIZE", "USED%", "FRAMES",
        ],
        rows,
    );
    println!(
        "\nnew fragments are written in frame format {}",
        text(&status["frame_format"])
    );
}

/// The frame formats a node knows, as `1,2`.
fn frame_formats(known: &Value) -> String {
    match known.as_array() {
        Some(known) => known.iter().map(text).collect::<Vec<_>>().join(","),
        None => "-".into(),
    }
}

fn show_buckets(buckets: &Value) {
    let rows = buckets
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| {
            let mut objects = text(&b["objects"]);
            if b["shards_unanswered"].as_u64().unwrap_or(0) > 0 {
                // Some shards had no holder up: what they hold is not counted.
                objects.push_str(" (partial)");
            }
            vec![
                text(&b["name"]),
                objects,
                bytes(b["bytes"].as_u64()),
                text(&b["versions"]),
                bytes(b["version_bytes"].as_u64()),
                b["versioning"].as_str().unwrap_or("Off").into(),
                text(&b["owner"]),
                text(&b["created"]),
            ]
        })
        .collect();
    table(
        &[
            "BUCKET",
            "OBJECTS",
            "BYTES",
            "VERSIONS",
            "VERSION BYTES",
            "VERSIONING",
            "OWNER",
            "CREATED",
        ],
        rows,
    );
}

fn show_scrubs(status: &Value) {
    let rows = status["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            let s = &n["scrub"];
            let state = match (n["up"] == true, s["running"] == true) {
                (false, _) => "DOWN",
                (true, true) => "scrubbing",
                (true, false) => "idle",
            };
            vec![
                text(&n["id"]),
                state.into(),
                text(&s["passes"]),
                text(&s["files_checked"]),
                bytes(s["bytes_checked"].as_u64()),
                text(&s["corrupt"]),
                text(&s["missing"]),
                text(&s["repaired"]),
                text(&s["awaiting_repair"]),
                unix_time(&s["last_pass_finished_unix"]),
            ]
        })
        .collect();
    table(
        &[
            "NODE",
            "STATE",
            "PASSES",
            "FILES",
            "CHECKED",
            "CORRUPT",
            "MISSING",
            "REPAIRED",
            "AWAITING",
            "LAST PASS FINISHED",
        ],
        rows,
    );
}

fn show_scrub_started(answer: &Value) {
    let scrub = &answer["scrub"];
    let state = if scrub["running"] == true {
        "scrubbing"
    } else {
        "idle (the pass asked for has already finished)"
    };
    println!("Scrub of {}: {state}", text(&answer["node"]));
    println!("  Passes finished  {}", text(&scrub["passes"]));
    println!("  Files checked    {}", text(&scrub["files_checked"]));
}

/// Bytes in binary units, one decimal.
fn bytes(n: Option<u64>) -> String {
    let Some(n) = n else {
        return "-".into();
    };
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < units.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

/// A Unix time as UTC, or "never".
fn unix_time(value: &Value) -> String {
    value
        .as_i64()
        .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
        .map_or_else(
            || "never".into(),
            |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        )
}

fn show_heal(heal: &Value) {
    if heal.is_null() {
        println!("No heal has run since this gateway started.");
        return;
    }
    let state = if heal["running"] == true {
        "running"
    } else {
        "finished"
    };
    println!("Heal of {}: {state}", text(&heal["node"]));
    println!(
        "  {:<17} {} of about {}",
        "Versions listed",
        text(&heal["versions_listed"]),
        text(&heal["versions_total"])
    );
    for (label, field) in [
        ("Shards compared", "shards_compared"),
        ("Shards differing", "shards_differing"),
        ("Keys checked", "keys_checked"),
        ("Keys repaired", "keys_repaired"),
        ("Bytes rebuilt", "bytes_rebuilt"),
        ("Bytes per second", "bytes_per_sec"),
        ("Errors", "errors"),
    ] {
        println!("  {label:<17} {}", text(&heal[field]));
    }
}

fn show_heals(heals: &Value) {
    let rows = heals
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| {
            let state = match (h["running"] == true, h["errors"].as_u64().unwrap_or(0)) {
                (true, _) => "running",
                (false, 0) => "finished",
                (false, _) => "errors",
            };
            vec![
                text(&h["node"]),
                state.into(),
                unix_time(&h["started_unix"]),
                match h["finished_unix"] {
                    Value::Null => "-".into(),
                    ref t => unix_time(t),
                },
                text(&h["keys_repaired"]),
                bytes(h["bytes_rebuilt"].as_u64()),
                text(&h["errors"]),
            ]
        })
        .collect();
    table(
        &[
            "NODE",
            "STATE",
            "STARTED",
            "FINISHED",
            "KEYS-REPAIRED",
            "REBUILT",
            "ERRORS",
        ],
        rows,
    );
}

fn show_replication(status: &Value) {
    show_links(&status["links"]);
}

fn show_bucket_replication(answer: &Value) {
    let targets: Vec<String> = (answer["sends_to"].as_array().into_iter().flatten())
        .map(text)
        .collect();
    let chosen = match answer["configured"] == true {
        true => "as configured",
        false => "every peer region, the default",
    };
    match targets.is_empty() {
        true => println!(
            "{}: kept in {} ({chosen})",
            text(&answer["bucket"]),
            text(&answer["region"])
        ),
        false => println!(
            "{}: {} sends its changes to {} ({chosen})",
            text(&answer["bucket"]),
            text(&answer["region"]),
            targets.join(", ")
        ),
    }
}

fn show_links(links: &Value) {
    let rows = (links.as_array().into_iter().flatten())
        .map(|l| {
            vec![
                format!("{} -> {}", text(&l["source"]), text(&l["target"])),
                if l["up"] == true { "up" } else { "DOWN" }.into(),
                text(&l["backlog_entries"]),
                bytes(l["backlog_bytes"].as_u64()),
                match l["oldest_pending_secs"].as_f64() {
                    Some(secs) => format!("{secs:.1} s"),
                    None => "-".into(),
                },
                format!("{}/s", bytes(l["bytes_per_sec"].as_f64().map(|b| b as u64))),
                text(&l["last_error"]),
            ]
        })
        .collect();
    table(
        &[
            "LINK",
            "STATE",
            "BACKLOG",
            "BYTES",
            "OLDEST",
            "RATE",
            "LAST-ERROR",
        ],
        rows,
    );
}

fn show_keys(keys: &Value) {
    let rows = keys
        .as_array()
        .into_iter()
        .flatten()
        .map(|k| {
            let grants: Vec<String> = k["buckets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(permissions)
                .collect();
            vec![
                text(&k["id"]),
                text(&k["name"]),
                text(&k["created"]),
                if k["create_bucket"] == true {
                    "yes"
                } else {
                    "no"
                }
                .into(),
                grants.join(" "),
            ]
        })
        .collect();
    table(
        &[
            "KEY ID",
            "NAME",
            "CREATED",
            "CREATE-BUCKET",
            "BUCKETS (R/W/O)",
        ],
        rows,
    );
}

fn show_key(key: &Value) {
    println!("Key id:         {}", text(&key["id"]));
    println!("Name:           {}", text(&key["name"]));
    println!("Created:        {}", text(&key["created"]));
    println!("Create buckets: {}", key["create_bucket"] == true);
    let rows: Vec<Vec<String>> = key["buckets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| {
            ["bucket", "read", "write", "owner"]
                .iter()
                .map(|f| text(&g[f]))
                .collect()
        })
        .collect();
    if rows.is_empty() {
        println!("No permissions in any bucket.");
    } else {
        table(&["BUCKET", "READ", "WRITE", "OWNER"], rows);
    }
}

fn show_new_key(key: &Value) {
    show_key(key);
    println!("Secret:         {}", text(&key["secret"]));
    println!("The secret is shown this once: keep it now.");
}

fn show_deleted(answer: &Value) {
    println!("Deleted key {}", text(&answer["deleted"]));
}
