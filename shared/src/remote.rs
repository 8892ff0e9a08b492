//! How clients (workers, operator commands) reach a coordinator: its address, and TLS
//! when the address is `https://` or TLS files are given.

use std::path::{Path, PathBuf};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// A client's TLS settings, from files.
#[derive(Clone, Debug, Default)]
pub struct ClientTls {
    /// PEM CA certificate(s) that signed the coordinator's certificate (`None`: the
    /// system's roots).
    pub ca: Option<PathBuf>,
    /// PEM client certificate, for coordinators that require one (mutual TLS).
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
    /// Name to check the coordinator's certificate against (default: the address's host).
    pub domain: Option<String>,
}

impl ClientTls {
    /// Whether any TLS setting was given (an address without a scheme then means TLS).
    pub fn is_set(&self) -> bool {
        self.ca.is_some() || self.cert.is_some() || self.key.is_some() || self.domain.is_some()
    }

    fn config(&self) -> Result<ClientTlsConfig, String> {
        let mut tls = ClientTlsConfig::new();
        tls = match &self.ca {
            Some(ca) => tls.ca_certificate(Certificate::from_pem(read(ca, "TLS CA certificate")?)),
            None => tls.with_native_roots(),
        };
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                tls = tls.identity(Identity::from_pem(
                    read(cert, "TLS client certificate")?,
                    read(key, "TLS client key")?,
                ));
            }
            (None, None) => {}
            (Some(_), None) => {
                return Err("--tls-cert needs --tls-key (the certificate's private key)".into());
            }
            (None, Some(_)) => {
                return Err("--tls-key needs --tls-cert (the certificate it belongs to)".into());
            }
        }
        if let Some(domain) = &self.domain {
            tls = tls.domain_name(domain.clone());
        }
        Ok(tls)
    }
}

/// Reads a PEM file, naming it in the error.
pub fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    let bytes =
        std::fs::read(path).map_err(|e| format!("reading the {what} {}: {e}", path.display()))?;
    if !String::from_utf8_lossy(&bytes).contains("-----BEGIN") {
        return Err(format!(
            "the {what} {} is not PEM (expected a \"-----BEGIN …\" block)",
            path.display()
        ));
    }
    Ok(bytes)
}

/// The URL for a coordinator address: `host:port` gets `https://` when TLS settings are
/// given and `http://` otherwise; an address with a scheme is kept as it is.
pub fn coordinator_url(addr: &str, tls: &ClientTls) -> String {
    if addr.contains("://") {
        addr.to_owned()
    } else if tls.is_set() {
        format!("https://{addr}")
    } else {
        format!("http://{addr}")
    }
}

/// An endpoint for a coordinator address, with TLS for `https://` (see [`coordinator_url`]).
pub fn endpoint(addr: &str, tls: &ClientTls) -> Result<Endpoint, String> {
    let url = coordinator_url(addr, tls);
    let endpoint = Endpoint::from_shared(url.clone())
        .map_err(|e| format!("bad coordinator address \"{addr}\": {e}"))?;
    if url.starts_with("https://") {
        endpoint
            .tls_config(tls.config()?)
            .map_err(|e| format!("TLS for {url}: {e}"))
    } else if tls.is_set() {
        Err(format!(
            "TLS settings were given but the coordinator address {url} is plain http: use https:// (or no scheme)"
        ))
    } else {
        Ok(endpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_follows_the_tls_settings_and_bad_files_are_named() {
        let plain = ClientTls::default();
        assert_eq!(coordinator_url("h:7070", &plain), "http://h:7070");
        let dir = tempfile::tempdir().unwrap();
        let not_pem = dir.path().join("ca.txt");
        std::fs::write(&not_pem, "hello").unwrap();
        let tls = ClientTls {
            ca: Some(not_pem.clone()),
            ..ClientTls::default()
        };
        assert_eq!(coordinator_url("h:7070", &tls), "https://h:7070");
        assert_eq!(coordinator_url("https://h:1", &plain), "https://h:1");
        let err = endpoint("h:7070", &tls).unwrap_err();
        assert!(err.contains("ca.txt") && err.contains("not PEM"), "{err}");
        let missing = ClientTls {
            ca: Some(dir.path().join("nope.pem")),
            ..ClientTls::default()
        };
        assert!(endpoint("h:1", &missing).unwrap_err().contains("nope.pem"));
        assert!(
            endpoint("http://h:1", &tls)
                .unwrap_err()
                .contains("plain http")
        );
        let half = ClientTls {
            cert: Some(not_pem),
            ..ClientTls::default()
        };
        assert!(endpoint("h:1", &half).unwrap_err().contains("--tls-key"));
    }
}
