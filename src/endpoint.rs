//! Where the client commands (`tessera bench`, `tessera admin`) send their requests, and the
//! credentials they sign them with.

use anyhow::Context;
use std::path::PathBuf;
use tessera::client::{Client, ClientConfig};

#[derive(clap::Args)]
pub struct EndpointArgs {
    /// S3 endpoint (else AWS_ENDPOINT_URL).
    #[arg(
        long,
        env = "AWS_ENDPOINT_URL",
        default_value = "http://127.0.0.1:9000"
    )]
    pub endpoint: String,
    /// Access key id (else TESSERA_ACCESS_KEY_ID, else AWS_ACCESS_KEY_ID).
    #[arg(long)]
    access_key: Option<String>,
    /// Secret access key (else TESSERA_SECRET_ACCESS_KEY, else AWS_SECRET_ACCESS_KEY).
    #[arg(long)]
    secret_key: Option<String>,
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// Accept any TLS certificate.
    #[arg(long)]
    insecure: bool,
    /// PEM file of CA certificates to trust besides the usual roots (else AWS_CA_BUNDLE, as
    /// the aws CLI).
    #[arg(long, env = "AWS_CA_BUNDLE")]
    ca_file: Option<PathBuf>,
}

impl EndpointArgs {
    pub fn client(&self) -> anyhow::Result<Client> {
        let credential = |flag: &Option<String>, names: [&str; 2]| {
            flag.clone()
                .or_else(|| names.iter().find_map(|n| std::env::var(n).ok()))
                .with_context(|| format!("no credentials: pass them as flags or set {}", names[0]))
        };
        Client::new(ClientConfig {
            endpoint: self.endpoint.clone(),
            access_key: credential(
                &self.access_key,
                ["TESSERA_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"],
            )?,
            secret_key: credential(
                &self.secret_key,
                ["TESSERA_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"],
            )?,
            region: self.region.clone(),
            ca_file: self.ca_file.clone(),
            insecure: self.insecure,
        })
    }
}
