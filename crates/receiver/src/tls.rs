//! HTTPS: the receiver's certificate chain and private key, read from PEM
//! files and served by rustls (TLS 1.3 and 1.2, HTTP/1.1), and read again
//! when the files change or on SIGHUP, without dropping a connection.
//!
//! Each handshake asks [`Tls`] for the current pair, so a reload takes
//! effect for the next connection; connections already open keep the pair
//! they started with until they close. A pair that cannot be used (a file
//! missing or unreadable, no certificate, no key, or a key that does not
//! match the certificate) is refused: at start, as an error; at a reload,
//! with a log line saying why, the pair in use staying in use.
//!
//! Renewals (certbot and the like) write the certificate and the key one
//! after the other, so a poll may see one new file and one old one, which
//! do not match. A reload that fails right after the files changed is
//! tried again at the next poll before it is logged as a warning: a
//! half-written pair is not an error, a pair that stays bad is.
//!
//! The server's certificate must be valid now: an expired one is refused
//! like a bad pair (at start an error, at a reload the pair in use stays),
//! since no client would accept it. One that expires within
//! [`EXPIRY_WARNING`] is served with a warning, logged again once a day
//! by [`Tls::watch`] until a renewal replaces it; the gauge
//! `cmc_receiver_tls_certificate_expiry_timestamp_seconds` holds the end
//! of the served certificate's validity (Unix seconds) for alerting.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use tokio_rustls::rustls;

use crate::read::{ReadError, read_regular};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The largest certificate chain or key file read (a chain of a few
/// certificates is a few KiB; anything this large is not one).
const MAX_PEM_FILE: u64 = 1024 * 1024;

/// How often [`Tls::watch`] looks at the files by default.
pub const WATCH_EVERY: Duration = Duration::from_secs(2);

/// A served certificate that expires within this is warned about (at
/// load, at each reload, and once a day while it is served).
pub const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 3600);

/// How often [`Tls::watch`] repeats the warning of a certificate near its
/// end.
const EXPIRY_WARNING_EVERY: Duration = Duration::from_secs(24 * 3600);

/// A certificate and key pair that cannot be served, and why.
#[derive(Debug)]
pub struct TlsError(String);

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

/// The receiver's HTTPS certificate, reloadable: made from a certificate
/// chain file and a private key file (PEM), it gives the
/// [`acceptor`](Tls::acceptor) the serve loop wraps each connection in, and
/// can be read again ([`reload`](Tls::reload), [`watch`](Tls::watch)).
///
/// ```no_run
/// use cmc_receiver::tls::Tls;
///
/// let tls = Tls::load("/etc/cmc/fullchain.pem", "/etc/cmc/privkey.pem")?;
/// let acceptor = tls.acceptor(); // for each accepted TcpStream: acceptor.accept(stream)
/// # let _ = acceptor;
/// # Ok::<(), cmc_receiver::tls::TlsError>(())
/// ```
#[derive(Clone)]
pub struct Tls {
    inner: Arc<Inner>,
}

struct Inner {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: Slot,
    config: Arc<rustls::ServerConfig>,
    /// What the files looked like at the last reload that succeeded, and
    /// at the last that failed (with whether it was logged).
    seen: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    loaded: Option<Stamp>,
    failed: Option<(Stamp, bool)>,
    /// The validity of the certificate served.
    validity: Option<Validity>,
}

/// The validity period of a certificate, in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Validity {
    not_before: i64,
    not_after: i64,
}

impl Validity {
    /// Logs what an operator must act on: a certificate not valid yet (a
    /// clock behind, or a certificate made for later) or near its end;
    /// and sets the expiry gauge.
    fn note(&self, cert: &Path, now: i64) {
        metrics::gauge!("cmc_receiver_tls_certificate_expiry_timestamp_seconds")
            .set(self.not_after as f64);
        if now < self.not_before {
            tracing::warn!(
                cert = %cert.display(),
                valid_from = %unix_time(self.not_before),
                "the served certificate is not valid yet: clients refuse it until then \
                 (is this machine's clock right?)"
            );
        }
        let left = self.not_after.saturating_sub(now);
        if left < EXPIRY_WARNING.as_secs() as i64 {
            tracing::warn!(
                cert = %cert.display(),
                expires = %unix_time(self.not_after),
                days_left = left / 86_400,
                "the served certificate expires soon: renew it (the receiver takes the new \
                 pair from the files without a restart)"
            );
        }
    }
}

/// A Unix time as RFC 3339, for messages.
fn unix_time(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| format!("{seconds} (Unix seconds)"))
}

/// The current time in Unix seconds.
fn now_unix() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// What a poll compares: each file's size, modification time and inode,
/// following symbolic links (certbot's `live/` names are links that move
/// to new files in `archive/`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp([Option<(u64, Option<SystemTime>, u64)>; 2]);

impl Stamp {
    fn of(cert: &Path, key: &Path) -> Stamp {
        let one = |path: &Path| {
            std::fs::metadata(path).ok().map(|m| {
                #[cfg(unix)]
                let inode = std::os::unix::fs::MetadataExt::ino(&m);
                #[cfg(not(unix))]
                let inode = 0;
                (m.len(), m.modified().ok(), inode)
            })
        };
        Stamp([one(cert), one(key)])
    }
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The paths only: never the key.
        f.debug_struct("Tls")
            .field("cert", &self.inner.cert)
            .field("key", &self.inner.key)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inner")
            .field("cert", &self.cert)
            .finish_non_exhaustive()
    }
}

/// The pair in use, shared by [`Tls`] and the handshakes.
type Slot = Arc<RwLock<Arc<CertifiedKey>>>;

/// Each handshake asks for the pair in use at that moment.
#[derive(Debug)]
struct Resolver(Slot);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

impl Tls {
    /// Reads the certificate chain at `cert` (PEM, the server's certificate
    /// first, then its intermediates) and the private key at `key` (PEM:
    /// PKCS #8, PKCS #1 or SEC1), and checks that the key is the
    /// certificate's. An error says which file and what is wrong.
    pub fn load(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Result<Tls, TlsError> {
        let (cert, key) = (cert.into(), key.into());
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let stamp = Stamp::of(&cert, &key);
        let (pair, validity) = read_pair(&cert, &key, &provider, now_unix())?;
        validity.note(&cert, now_unix());
        let current: Slot = Arc::new(RwLock::new(Arc::new(pair)));
        let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError(format!("TLS 1.2 and 1.3: {e}")))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Resolver(current.clone())));
        // HTTP/1.1 is what the receiver serves (and what CMC speaks).
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let inner = Arc::new(Inner {
            cert,
            key,
            provider,
            current,
            config: Arc::new(config),
            seen: Mutex::new(Seen {
                loaded: Some(stamp),
                failed: None,
                validity: Some(validity),
            }),
        });
        Ok(Tls { inner })
    }

    /// The acceptor that makes TLS connections with the current pair.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.inner.config.clone())
    }

    /// The certificate file's path.
    pub fn cert_path(&self) -> &Path {
        &self.inner.cert
    }

    /// Reads both files again now and, if they make a usable pair, serves
    /// it from the next handshake on. On an error the pair in use stays.
    /// (What SIGHUP does.)
    pub fn reload(&self) -> Result<(), TlsError> {
        let stamp = Stamp::of(&self.inner.cert, &self.inner.key);
        let result = read_pair(
            &self.inner.cert,
            &self.inner.key,
            &self.inner.provider,
            now_unix(),
        );
        let mut seen = self.inner.seen.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(pair) => {
                self.take(pair, stamp, &mut seen);
                Ok(())
            }
            Err(e) => {
                seen.failed = Some((stamp, true));
                Err(e)
            }
        }
    }

    /// Serves `pair` (read from files that looked like `stamp`) from the
    /// next handshake on.
    fn take(&self, (pair, validity): (CertifiedKey, Validity), stamp: Stamp, seen: &mut Seen) {
        *self
            .inner
            .current
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Arc::new(pair);
        seen.loaded = Some(stamp);
        seen.failed = None;
        seen.validity = Some(validity);
        validity.note(&self.inner.cert, now_unix());
    }

    /// Repeats the warnings of [`EXPIRY_WARNING`] for the certificate in
    /// use (what [`watch`](Tls::watch) does once a day).
    pub fn check_expiry(&self) {
        let validity = self
            .inner
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .validity;
        if let Some(v) = validity {
            v.note(&self.inner.cert, now_unix());
        }
    }

    /// One poll of [`watch`](Tls::watch): reloads when the files differ
    /// from the pair in use, logging the outcome. `true` when a new pair
    /// was taken.
    pub fn poll(&self) -> bool {
        let stamp = Stamp::of(&self.inner.cert, &self.inner.key);
        {
            let mut seen = self.inner.seen.lock().unwrap_or_else(|e| e.into_inner());
            if seen.loaded.as_ref() == Some(&stamp) {
                return false;
            }
            if let Some((failed, logged)) = &mut seen.failed
                && *failed == stamp
            {
                if *logged {
                    return false;
                }
                // Second look at the same bad files: it is not a renewal
                // half-way; say so once, below.
                *logged = true;
            }
        }
        let result = read_pair(
            &self.inner.cert,
            &self.inner.key,
            &self.inner.provider,
            now_unix(),
        );
        let mut seen = self.inner.seen.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(pair) => {
                self.take(pair, stamp, &mut seen);
                tracing::info!(
                    cert = %self.inner.cert.display(),
                    "the certificate and key changed on disk; serving the new pair to new connections"
                );
                true
            }
            Err(e) => {
                match &seen.failed {
                    Some((failed, true)) if *failed == stamp => tracing::warn!(
                        error = %e,
                        "the certificate or key changed on disk but cannot be served; \
                         keeping the pair in use"
                    ),
                    _ => seen.failed = Some((stamp, false)),
                }
                false
            }
        }
    }

    /// Polls the files every `every` (see [`WATCH_EVERY`]) on a task of
    /// its own, until the returned handle is dropped.
    pub fn watch(&self, every: Duration) -> TlsWatch {
        let tls = self.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            let mut warned = tokio::time::Instant::now();
            loop {
                tick.tick().await;
                let polled = tls.clone();
                // Off the runtime's threads: a slow disk must not stall
                // the requests.
                let _ = tokio::task::spawn_blocking(move || polled.poll()).await;
                if warned.elapsed() >= EXPIRY_WARNING_EVERY {
                    warned = tokio::time::Instant::now();
                    tls.check_expiry();
                }
            }
        });
        TlsWatch(task)
    }
}

/// The task of [`Tls::watch`]; dropping it stops the polling.
#[derive(Debug)]
pub struct TlsWatch(tokio::task::JoinHandle<()>);

impl Drop for TlsWatch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A regular file of at most [`MAX_PEM_FILE`] bytes ([`read_regular`]).
fn read_limited(path: &Path, what: &str) -> Result<Vec<u8>, TlsError> {
    read_regular(path, MAX_PEM_FILE).map_err(|e| match e {
        ReadError::TooLarge(_) => TlsError(format!(
            "the {what} file {} is larger than {MAX_PEM_FILE} bytes; is it a PEM file?",
            path.display()
        )),
        other => TlsError(format!("the {what} file {}: {other}", path.display())),
    })
}

/// The validity period of the server's certificate (the chain's first).
fn validity(leaf: &CertificateDer<'_>, cert: &Path) -> Result<Validity, TlsError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref()).map_err(|e| {
        TlsError(format!(
            "the certificate file {}: its first certificate does not parse as X.509: {e}",
            cert.display()
        ))
    })?;
    let v = parsed.validity();
    Ok(Validity {
        not_before: v.not_before.timestamp(),
        not_after: v.not_after.timestamp(),
    })
}

/// The pair the two files make, checked, with the certificate's validity;
/// an expired certificate (at `now`, Unix seconds) is refused.
fn read_pair(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
    now: i64,
) -> Result<(CertifiedKey, Validity), TlsError> {
    let bytes = read_limited(cert, "certificate")?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            TlsError(format!(
                "the certificate file {} is not PEM: {e}",
                cert.display()
            ))
        })?;
    if chain.is_empty() {
        return Err(TlsError(format!(
            "the certificate file {} holds no CERTIFICATE block",
            cert.display()
        )));
    }
    let validity = validity(&chain[0], cert)?;
    if now > validity.not_after {
        return Err(TlsError(format!(
            "the certificate in {} expired at {}: renew it",
            cert.display(),
            unix_time(validity.not_after)
        )));
    }
    let bytes = read_limited(key, "key")?;
    if bytes
        .windows(b"ENCRYPTED PRIVATE KEY".len())
        .any(|w| w == b"ENCRYPTED PRIVATE KEY")
    {
        return Err(TlsError(format!(
            "the key file {} holds an encrypted key, which cannot be read without its \
             passphrase: decrypt it (openssl pkey -in KEY -out DECRYPTED) and keep the file \
             readable by the receiver only",
            key.display()
        )));
    }
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(key) {
        use std::os::unix::fs::PermissionsExt as _;
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                key = %key.display(),
                "the TLS key file may be read by other users: chmod 600 it"
            );
        }
    }
    // Never the key's bytes in an error: only what kind of problem.
    let key_der = PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        TlsError(format!(
            "the key file {} holds no usable private key (PEM PKCS #8, PKCS #1 or SEC1): {}",
            key.display(),
            match e {
                rustls::pki_types::pem::Error::NoItemsFound => "no key block".to_owned(),
                other => other.to_string(),
            }
        ))
    })?;
    let pair = CertifiedKey::from_der(chain, key_der, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => TlsError(format!(
            "the key in {} is not the key of the certificate in {}",
            key.display(),
            cert.display()
        )),
        other => TlsError(format!(
            "the certificate {} and key {} cannot be served: {other}",
            cert.display(),
            key.display()
        )),
    })?;
    Ok((pair, validity))
}
