//! The trust of plugins' outgoing `https://` requests: the Mozilla root
//! certificates bundled by `webpki-roots`, plus the PEM certificates of
//! `--tls-ca-file` (a company's own CA). Certificates are always verified.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

/// A TLS client configuration for HTTP/1.1 that trusts the bundled roots
/// and every certificate in `extra_roots`.
pub fn client_config(extra_roots: Option<&Path>) -> Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = extra_roots {
        let what = || format!("reading the CA certificates in {}", path.display());
        let mut added = 0;
        for cert in CertificateDer::pem_file_iter(path).with_context(what)? {
            roots.add(cert.with_context(what)?).with_context(what)?;
            added += 1;
        }
        if added == 0 {
            bail!("{}: no PEM certificate in it", path.display());
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("setting up TLS")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_certificates_is_an_error_that_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = client_config(Some(&empty)).unwrap_err();
        assert!(format!("{e:#}").contains("empty.pem"), "{e:#}");
        let missing = dir.path().join("missing.pem");
        let e = client_config(Some(&missing)).unwrap_err();
        assert!(format!("{e:#}").contains("missing.pem"), "{e:#}");
        assert!(client_config(None).is_ok());
    }
}
