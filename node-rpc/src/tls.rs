//! TLS for node ports: the server side's certificate and key, and the client side's trust in the
//! cluster's CA, both loaded from PEM files. Node certificates must name the host of the node's
//! `addr` in the cluster's node list (an IP address or a DNS name).

use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{0} holds no {1}")]
    Missing(PathBuf, &'static str),
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn open(path: &Path) -> Result<std::io::BufReader<std::fs::File>, TlsError> {
    let file = std::fs::File::open(path).map_err(|e| TlsError::Read(path.into(), e))?;
    Ok(std::io::BufReader::new(file))
}

/// What a node serves its port with: the PEM certificate chain and private key. HTTP/1.1 only, as
/// on plain TCP (see `RAW_FRAGMENT_PROTOCOL`).
pub fn server_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, TlsError> {
    let certs = rustls_pemfile::certs(&mut open(cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Read(cert.into(), e))?;
    if certs.is_empty() {
        return Err(TlsError::Missing(cert.into(), "certificate"));
    }
    let key = rustls_pemfile::private_key(&mut open(key)?)
        .map_err(|e| TlsError::Read(key.into(), e))?
        .ok_or_else(|| TlsError::Missing(key.into(), "private key"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// What a client of nodes checks their certificates with: the CA certificates of a PEM file, and
/// nothing else (not the system's roots).
pub fn client_config(ca: &Path) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut open(ca)?) {
        roots.add(cert.map_err(|e| TlsError::Read(ca.into(), e))?)?;
    }
    if roots.is_empty() {
        return Err(TlsError::Missing(ca.into(), "CA certificate"));
    }
    // No ALPN protocols here: the connector sets them (HTTP/1.1).
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
