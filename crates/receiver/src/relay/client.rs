//! The relay's HTTP client: hyper's pooled client over rustls (aws-lc-rs),
//! verifying certificates against the system's roots, or a CA file's.

use std::path::Path;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio_rustls::rustls;

/// The client the relay sends with.
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The largest CA file read (a bundle of every public CA is about 200 KiB).
const MAX_CA_FILE: u64 = 4 << 20;

/// A client trusting the system's roots, or, with `ca_file`, the
/// certificates of that PEM file only; `allow_http` lets it call
/// `http://` URLs too. Without `https` (the target is `http://`), a system
/// without CA certificates is not an error.
pub fn client(ca_file: Option<&Path>, allow_http: bool, https: bool) -> Result<HttpClient, String> {
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            use rustls::pki_types::CertificateDer;
            use rustls::pki_types::pem::PemObject as _;
            let shown = path.display();
            let bytes = crate::read::read_regular(path, MAX_CA_FILE)
                .map_err(|e| format!("--relay-ca-file {shown}: {e}"))?;
            let certs = CertificateDer::pem_slice_iter(&bytes)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("--relay-ca-file {shown}: {e}"))?;
            if certs.is_empty() {
                return Err(format!("--relay-ca-file {shown}: no PEM certificate in it"));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| format!("--relay-ca-file {shown}: {e}"))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!(error = %e, "the relay could not read some of the system's CA certificates");
            }
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 && https {
                return Err(
                    "the relay found no CA certificate on this system: install the CA \
                     certificates (ca-certificates) or give --relay-ca-file"
                        .to_owned(),
                );
            }
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("the relay's TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls);
    // Each request is written at once (headers and body), not held back
    // by Nagle's algorithm waiting for the previous segment's ACK.
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let connector = if allow_http {
        builder.https_or_http().enable_http1().wrap_connector(http)
    } else {
        builder.https_only().enable_http1().wrap_connector(http)
    };
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(std::time::Duration::from_secs(60))
        .build(connector))
}
