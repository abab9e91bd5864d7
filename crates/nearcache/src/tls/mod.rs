//! TLS on both sides, with rustls (the ring provider): the listener's configuration, built from
//! the certificate files and rebuilt on reload; the upstream connector; and the handshakes that
//! turn a TCP socket into the read and write halves of [`halves`].
//!
//! Owns reading certificate and key files and checking them, so that a bad file is an error
//! that names it (at start, and on reload, where the configuration in force stays). Never
//! reads or writes a Redis frame, and never logs a key's contents.

pub mod halves;

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::TcpStream;

pub use halves::{TlsRead, TlsWrite};

use crate::config::tls::TlsAuthClients;
use crate::config::Config;

/// rustls with *ring*: aws-lc-rs, rustls's default, needs cmake (and nasm) to build. rustls
/// 0.23.48 marks *ring*'s provider deprecated because it has no post-quantum key exchange;
/// X25519, P-256 and P-384 are what it offers.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read certificates from {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("no PEM certificate in {}", path.display()));
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| format!("cannot read a private key from {}: {e}", path.display()))
}

fn roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in certs(path)? {
        roots
            .add(cert)
            .map_err(|e| format!("bad CA certificate in {}: {e}", path.display()))?;
    }
    Ok(roots)
}

/// The system's CA certificates, for an upstream without `upstream_tls_ca_cert_file`.
fn system_roots() -> Result<RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map(|e| e.to_string())
            .unwrap_or_default();
        return Err(format!(
            "no system CA certificates found ({why}); set upstream_tls_ca_cert_file"
        ));
    }
    Ok(roots)
}

/// The listener's rustls configuration from `tls_cert_file`, `tls_key_file`,
/// `tls_ca_cert_file` and `tls_auth_clients`.
fn server_config(config: &Config) -> Result<Arc<ServerConfig>, String> {
    let (Some(cert), Some(key_file)) = (&config.tls_cert_file, &config.tls_key_file) else {
        return Err("tls_listen needs tls_cert_file and tls_key_file".into());
    };
    let chain = certs(&cert.0)?;
    let key = key(&key_file.0)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match (config.tls_auth_clients, &config.tls_ca_cert_file) {
        (TlsAuthClients::No, _) => builder.with_no_client_auth(),
        (_, None) => return Err("tls_auth_clients needs tls_ca_cert_file".into()),
        (auth, Some(ca)) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots(&ca.0)?), provider());
            let verifier = match auth {
                TlsAuthClients::Optional => verifier.allow_unauthenticated(),
                _ => verifier,
            };
            let verifier = verifier
                .build()
                .map_err(|e| format!("tls_ca_cert_file {}: {e}", ca.0.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let server = builder.with_single_cert(chain, key).map_err(|e| {
        format!(
            "{} and {} do not make a certificate and its key: {e}",
            cert.0.display(),
            key_file.0.display()
        )
    })?;
    Ok(Arc::new(server))
}

/// The TLS listener's configuration. A reload replaces it whole: handshakes that start after
/// it use the new one, connections already up keep what they negotiated.
pub struct ServerTls {
    current: RwLock<Arc<ServerConfig>>,
}

impl ServerTls {
    /// Reads the listener's files; the error names the file at fault.
    pub fn load(config: &Config) -> Result<ServerTls, String> {
        Ok(ServerTls {
            current: RwLock::new(server_config(config)?),
        })
    }

    /// Reads the files again (replaced in place, or named anew); on error the configuration in
    /// force stays.
    pub fn reload(&self, config: &Config) -> Result<(), String> {
        let new = server_config(config)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = new;
        Ok(())
    }

    /// The acceptor for the next handshake.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        tokio_rustls::TlsAcceptor::from(current.clone())
    }
}

/// A server handshake on `tcp`, within `limit`; the halves on success.
pub async fn accept(
    acceptor: tokio_rustls::TlsAcceptor,
    tcp: TcpStream,
    limit: Duration,
) -> std::io::Result<(TlsRead, TlsWrite)> {
    let tls = tokio::time::timeout(limit, acceptor.accept(tcp))
        .await
        .map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")
        })??;
    let (tcp, conn) = tls.into_inner();
    Ok(halves::split(tcp, rustls::Connection::Server(conn)))
}

/// How upstream connections speak TLS: the client configuration and the name Redis's
/// certificate is checked against.
#[derive(Clone, Debug)]
pub struct Upstream {
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
}

impl Upstream {
    /// From the `upstream_tls*` settings; `None` when upstream TLS is off.
    pub fn from_config(config: &Config) -> Result<Option<Upstream>, String> {
        if !config.upstream_tls_on() {
            return Ok(None);
        }
        let roots = match &config.upstream_tls_ca_cert_file {
            Some(ca) => roots(&ca.0)?,
            None => system_roots()?,
        };
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots);
        let client = match (
            &config.upstream_tls_cert_file,
            &config.upstream_tls_key_file,
        ) {
            (Some(cert), Some(key_file)) => builder
                .with_client_auth_cert(certs(&cert.0)?, key(&key_file.0)?)
                .map_err(|e| {
                    format!(
                        "{} and {} do not make a certificate and its key: {e}",
                        cert.0.display(),
                        key_file.0.display()
                    )
                })?,
            _ => builder.with_no_client_auth(),
        };
        let name = match &config.upstream_tls_server_name {
            Some(name) => name.0.clone(),
            None => host_of(config.upstream.as_str()).to_string(),
        };
        let server_name = ServerName::try_from(name.clone()).map_err(|_| {
            format!("{name:?} is not a name a certificate can carry; set upstream_tls_server_name")
        })?;
        Ok(Some(Upstream {
            config: Arc::new(client),
            server_name,
        }))
    }

    /// A client handshake on `tcp`; the halves on success. The caller bounds the time.
    pub async fn connect(&self, tcp: TcpStream) -> std::io::Result<(TlsRead, TlsWrite)> {
        let connector = tokio_rustls::TlsConnector::from(self.config.clone());
        let tls = connector.connect(self.server_name.clone(), tcp).await?;
        let (tcp, conn) = tls.into_inner();
        Ok(halves::split(tcp, rustls::Connection::Client(conn)))
    }
}

/// The host of `host:port` (an IPv6 address without its brackets).
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_of_an_address() {
        assert_eq!(host_of("redis.example:6380"), "redis.example");
        assert_eq!(host_of("127.0.0.1:6379"), "127.0.0.1");
        assert_eq!(host_of("[::1]:6379"), "::1");
    }

    #[test]
    fn a_missing_file_is_named_in_the_error() {
        let mut config = Config::default();
        for (name, value) in [
            ("tls_cert_file", "/nonexistent/cert.pem"),
            ("tls_key_file", "/nonexistent/key.pem"),
            ("tls_auth_clients", "no"),
        ] {
            config.set(name, value).unwrap();
        }
        let err = ServerTls::load(&config).err().expect("no such file");
        assert!(err.contains("/nonexistent/cert.pem"), "{err}");
    }
}
