//! Certificates for TLS tests, made fresh by each test with rcgen in its own temp dir (a CA, a
//! server certificate for `localhost`/`127.0.0.1`, a client certificate), and a TLS client
//! that speaks RESP and reports the certificate the server showed.
//!
//! Every read has a timeout, as everywhere in the harness.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SerialNumber,
};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::{limits, READ_TIMEOUT};

/// A CA and certificates it signed, as PEM files in a temp dir.
pub struct Pki {
    dir: tempfile::TempDir,
    ca: Issuer<'static, KeyPair>,
}

impl Pki {
    /// A new CA (`ca.crt`), a server certificate (`server.crt`/`server.key`, serial 1) and a
    /// client certificate (`client.crt`/`client.key`).
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "nearcache test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.path().join("ca.crt"), cert.pem()).unwrap();
        let pki = Pki {
            dir,
            ca: Issuer::new(params, key),
        };
        pki.issue("server", "nearcache test server", 1);
        pki.issue("client", "nearcache test client", 2);
        pki
    }

    /// Writes `NAME.crt` and `NAME.key`: a certificate with common name `cn` and serial
    /// `serial`, for `localhost` and `127.0.0.1`, signed by the CA. Returns its DER.
    pub fn issue(&self, name: &str, cn: &str, serial: u64) -> Vec<u8> {
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.serial_number = Some(SerialNumber::from(serial));
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        std::fs::write(self.path(&format!("{name}.crt")), cert.pem()).unwrap();
        std::fs::write(self.path(&format!("{name}.key")), key.serialize_pem()).unwrap();
        cert.der().to_vec()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A file in the PKI's dir, as a path.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// A file in the PKI's dir, as text for a flag.
    pub fn file(&self, file: &str) -> String {
        self.path(file).display().to_string()
    }

    /// redis-server's arguments to serve TLS with the server certificate, clients' certificates
    /// checked against the CA.
    pub fn redis_args(&self) -> Vec<String> {
        vec![
            "--tls-cert-file".into(),
            self.file("server.crt"),
            "--tls-key-file".into(),
            self.file("server.key"),
            "--tls-ca-cert-file".into(),
            self.file("ca.crt"),
        ]
    }

    /// The DER of the certificate in `NAME.crt`.
    pub fn der(&self, name: &str) -> Vec<u8> {
        CertificateDer::from_pem_file(self.path(&format!("{name}.crt")))
            .unwrap()
            .to_vec()
    }

    /// A rustls client trusting the CA, presenting the client certificate of `cert_from`.
    pub fn client_config(&self, cert_from: Option<&Pki>) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(self.path("ca.crt")).unwrap())
            .unwrap();
        #[allow(deprecated)] // as in the proxy: *ring* has no post-quantum key exchange
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match cert_from {
            Some(pki) => {
                let chain = vec![CertificateDer::from_pem_file(pki.path("client.crt")).unwrap()];
                let key = PrivateKeyDer::from_pem_file(pki.path("client.key")).unwrap();
                builder.with_client_auth_cert(chain, key).unwrap()
            }
            None => builder.with_no_client_auth(),
        };
        Arc::new(config)
    }

    /// Connects over TLS to `addr` as `localhost`, with this PKI's client certificate if
    /// `with_cert`.
    pub async fn connect(&self, addr: &str, with_cert: bool) -> std::io::Result<TlsClient> {
        self.connect_as(addr, with_cert.then_some(self)).await
    }

    /// Connects over TLS to `addr`, trusting this PKI's CA, presenting `cert_from`'s client
    /// certificate (another PKI's, to be refused).
    pub async fn connect_as(
        &self,
        addr: &str,
        cert_from: Option<&Pki>,
    ) -> std::io::Result<TlsClient> {
        let tcp = TcpStream::connect(addr).await?;
        let connector = tokio_rustls::TlsConnector::from(self.client_config(cert_from));
        let name = ServerName::try_from("localhost").unwrap();
        let stream = tokio::time::timeout(READ_TIMEOUT, connector.connect(name, tcp))
            .await
            .map_err(|_| std::io::Error::other("TLS handshake timed out"))??;
        Ok(TlsClient {
            stream,
            buf: BytesMut::new(),
        })
    }
}

/// A RESP client over TLS.
pub struct TlsClient {
    stream: TlsStream<TcpStream>,
    buf: BytesMut,
}

impl TlsClient {
    /// The DER of the certificate the server presented.
    pub fn server_cert(&self) -> Vec<u8> {
        let (_, conn) = self.stream.get_ref();
        conn.peer_certificates().unwrap()[0].to_vec()
    }

    /// Sends one command and returns the raw reply; an error if the connection fails or
    /// closes first (a refused client certificate shows up here under TLS 1.3).
    pub async fn cmd(&mut self, args: &[&[u8]]) -> std::io::Result<Bytes> {
        let mut out = BytesMut::new();
        resp::encode_command(args, &mut out);
        self.stream.write_all(&out).await?;
        self.stream.flush().await?;
        loop {
            if let Some(n) = resp::scan(&self.buf, &limits())
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?
            {
                return Ok(self.buf.split_to(n).freeze());
            }
            let read = tokio::time::timeout(READ_TIMEOUT, self.stream.read_buf(&mut self.buf))
                .await
                .map_err(|_| std::io::Error::other("no reply in time"))??;
            if read == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
    }
}
