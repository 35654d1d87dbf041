//! HTTPS served by the receiver (`cmc_receiver::tls`, `serve::serve_with`
//! and the program's `--tls-cert`/`--tls-key`): certificates made in the
//! test by a CA of its own (rcgen), checked by real clients (curl and
//! OpenSSL, a rustls client, Java's HttpClient through a truststore when
//! a JDK is installed); a pair swapped on disk reaches new connections
//! while open ones finish; a bad pair is refused at start, and at a
//! reload leaves the pair in use serving.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cmc_receiver::serve;
use cmc_receiver::tls::Tls;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

/// A certificate authority of the test's own.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    fn new() -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "cmc-webhook test CA");
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for `localhost` and 127.0.0.1 named `name`:
    /// (certificate PEM, key PEM, certificate DER).
    fn leaf(&self, name: &str) -> (String, String, Vec<u8>) {
        self.leaf_until(name, None)
    }

    /// As [`leaf`](Ca::leaf), valid until the start of the day `days` from
    /// today (negative: already expired) when given.
    fn leaf_until(&self, name: &str, days: Option<i64>) -> (String, String, Vec<u8>) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        if let Some(days) = days {
            let at = jiff::Timestamp::now()
                .checked_add(jiff::SignedDuration::from_hours(days * 24))
                .unwrap();
            let day = jiff::tz::Offset::UTC.to_datetime(at).date();
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after =
                rcgen::date_time_ymd(i32::from(day.year()), day.month() as u8, day.day() as u8);
        }
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }
}

/// Writes a pair as a renewal would: each file replaced by a rename.
fn install(dir: &Path, cert: &str, key: &str) -> (PathBuf, PathBuf) {
    let (cert_path, key_path) = (dir.join("fullchain.pem"), dir.join("privkey.pem"));
    for (path, text) in [(&cert_path, cert), (&key_path, key)] {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }
    (cert_path, key_path)
}

/// A route that answers the size of what it was sent.
fn router() -> axum::Router {
    axum::Router::new().route(
        "/mails",
        axum::routing::post(|body: Bytes| async move { format!("got {} bytes", body.len()) }),
    )
}

/// Serves `router()` over HTTPS with `tls` on a free port until the
/// returned sender is dropped.
async fn serve_tls(tls: Tls) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        serve::serve_with(
            listener,
            router(),
            serve::Limits::default(),
            async move {
                let _ = stopped.await;
            },
            serve::Tally::default(),
            Some(&tls),
        )
        .await
        .unwrap();
    });
    (addr, stop)
}

/// A rustls client that trusts only `ca_pem`, limited to `versions`.
fn client(
    ca_pem: &str,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// A TLS connection to `addr` as `localhost`, made by `connector`: the
/// HTTP sender on it, the server's certificate (DER) and the version.
async fn connect(
    connector: &tokio_rustls::TlsConnector,
    addr: SocketAddr,
) -> (
    hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    Vec<u8>,
    rustls::ProtocolVersion,
) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let (_, session) = tls.get_ref();
    let cert = session.peer_certificates().unwrap()[0].to_vec();
    let version = session.protocol_version().unwrap();
    assert_eq!(session.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(connection);
    (sender, cert, version)
}

async fn post(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    body: &str,
) -> (u16, String) {
    sender.ready().await.unwrap();
    let response = sender
        .send_request(
            http::Request::post("/mails")
                .header("host", "localhost")
                .body(Full::new(Bytes::from(body.to_owned())))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_is_served_to_curl_and_to_a_rustls_client_on_tls_1_2_and_1_3() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let (cert, key, der) = ca.leaf("first");
    let (cert_path, key_path) = install(dir.path(), &cert, &key);
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, &ca.pem).unwrap();
    let (addr, _stop) = serve_tls(Tls::load(&cert_path, &key_path).unwrap()).await;

    for (versions, expected) in [
        (
            &[&rustls::version::TLS13][..],
            rustls::ProtocolVersion::TLSv1_3,
        ),
        (
            &[&rustls::version::TLS12][..],
            rustls::ProtocolVersion::TLSv1_2,
        ),
    ] {
        let (mut sender, served, version) = connect(&client(&ca.pem, versions), addr).await;
        assert_eq!((served.as_slice(), version), (der.as_slice(), expected));
        assert_eq!(
            post(&mut sender, "hello").await,
            (200, "got 5 bytes".to_owned())
        );
        // Keep-alive: a second request on the same connection.
        assert_eq!(
            post(&mut sender, "hello again").await,
            (200, "got 11 bytes".to_owned())
        );
    }

    // curl (OpenSSL) verifying against the test's CA, on each version.
    for version in [
        ["--tlsv1.3", "--tls-max", "1.3"],
        ["--tlsv1.2", "--tls-max", "1.2"],
    ] {
        let out = Command::new("curl")
            .args(["-sS", "--fail", "--cacert"])
            .arg(&ca_path)
            .args(version)
            .args(["--data-binary", "abc", "-H", "content-type: text/plain"])
            .arg(format!("https://localhost:{}/mails", addr.port()))
            .output()
            .expect("curl runs");
        assert!(
            out.status.success(),
            "curl {version:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "got 3 bytes");
    }
    // Without the CA, curl refuses the certificate: it is verified.
    let out = Command::new("curl")
        .args(["-sS", "--data-binary", "abc"])
        .arg(format!("https://localhost:{}/mails", addr.port()))
        .output()
        .unwrap();
    assert!(!out.status.success());

    // Plain HTTP on the HTTPS port is not served.
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", "--data-binary", "abc"])
        .arg(format!("http://127.0.0.1:{}/mails", addr.port()))
        .output()
        .unwrap();
    assert!(!out.status.success() || !String::from_utf8_lossy(&out.stdout).contains("got"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pair_swapped_on_disk_reaches_new_connections_while_open_ones_finish() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let (cert1, key1, der1) = ca.leaf("first");
    let (cert2, key2, der2) = ca.leaf("renewed");
    let (cert_path, key_path) = install(dir.path(), &cert1, &key1);
    let tls = Tls::load(&cert_path, &key_path).unwrap();
    let _watch = tls.watch(Duration::from_millis(100));
    let (addr, _stop) = serve_tls(tls).await;
    let connector = client(&ca.pem, &[&rustls::version::TLS13, &rustls::version::TLS12]);

    let (mut open, served, _) = connect(&connector, addr).await;
    assert_eq!(served, der1);
    assert_eq!(post(&mut open, "before").await.0, 200);

    // The renewal: new files renamed over the old ones.
    install(dir.path(), &cert2, &key2);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, served, _) = connect(&connector, addr).await;
        if served == der2 {
            break;
        }
        assert_eq!(served, der1, "neither the old nor the new certificate");
        assert!(
            Instant::now() < deadline,
            "the renewed pair was never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The connection made before the swap still serves requests.
    assert_eq!(
        post(&mut open, "after").await,
        (200, "got 5 bytes".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_pair_is_refused_at_start_and_at_a_reload_the_pair_in_use_stays() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let (cert1, key1, der1) = ca.leaf("first");
    let (_, other_key, _) = ca.leaf("other");
    let error = |cert: &str, key: &str| {
        let sub = tempfile::tempdir_in(dir.path()).unwrap();
        let (c, k) = install(sub.path(), cert, key);
        Tls::load(&c, &k).unwrap_err().to_string()
    };
    let mismatched = error(&cert1, &other_key);
    assert!(
        mismatched.contains("is not the key of the certificate"),
        "{mismatched}"
    );
    let no_cert = error("not a certificate\n", &key1);
    assert!(no_cert.contains("holds no CERTIFICATE block"), "{no_cert}");
    let no_key = error(&cert1, &cert1);
    assert!(no_key.contains("no usable private key"), "{no_key}");
    // The key's bytes are never in an error.
    let key_body = key1.lines().nth(1).unwrap();
    for message in [&mismatched, &no_cert, &no_key] {
        assert!(!message.contains(key_body), "{message}");
    }
    let missing = Tls::load(dir.path().join("absent.pem"), dir.path().join("absent.key"))
        .unwrap_err()
        .to_string();
    assert!(missing.contains("absent.pem"), "{missing}");
    // A named pipe would make opening wait for a writer forever: refused.
    #[cfg(unix)]
    {
        let fifo = dir.path().join("fifo.key");
        let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        let sub = tempfile::tempdir_in(dir.path()).unwrap();
        let (c, _) = install(sub.path(), &cert1, &key1);
        let refused = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::task::spawn_blocking(move || Tls::load(&c, &fifo).unwrap_err().to_string()),
        )
        .await
        .expect("a named pipe as the key must not hang the load")
        .unwrap();
        assert!(refused.contains("not a regular file"), "{refused}");
        let encrypted = error(
            &cert1,
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        );
        assert!(encrypted.contains("encrypted key"), "{encrypted}");
    }
    let huge = dir.path().join("huge.pem");
    std::fs::write(&huge, vec![b'A'; 2 << 20]).unwrap();
    let too_large = Tls::load(&huge, &huge).unwrap_err().to_string();
    assert!(too_large.contains("larger than"), "{too_large}");

    // Serving: a mismatched pair written over the good one is refused by
    // reload and by the poll, and the good pair keeps being served.
    let (cert_path, key_path) = install(dir.path(), &cert1, &key1);
    let tls = Tls::load(&cert_path, &key_path).unwrap();
    let (addr, _stop) = serve_tls(tls.clone()).await;
    install(dir.path(), &cert1, &other_key);
    assert!(tls.reload().is_err());
    assert!(!tls.poll());
    assert!(!tls.poll());
    let connector = client(&ca.pem, &[&rustls::version::TLS13]);
    let (mut sender, served, _) = connect(&connector, addr).await;
    assert_eq!(served, der1);
    assert_eq!(post(&mut sender, "x").await.0, 200);
    // Fixed on disk: the next poll takes it.
    install(dir.path(), &cert1, &key1);
    assert!(tls.poll());
    assert!(!tls.poll(), "nothing changed since");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_is_refused_at_start_and_at_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let (expired, expired_key, _) = ca.leaf_until("expired", Some(-2));
    let sub = tempfile::tempdir_in(dir.path()).unwrap();
    let (c, k) = install(sub.path(), &expired, &expired_key);
    let refused = Tls::load(&c, &k).unwrap_err().to_string();
    assert!(refused.contains("expired at"), "{refused}");
    assert!(refused.contains("renew it"), "{refused}");

    // One near its end is served (the warning is the program's log: see
    // the_program_warns_of_a_certificate_near_its_end).
    let (soon, soon_key, soon_der) = ca.leaf_until("soon", Some(3));
    let (cert_path, key_path) = install(dir.path(), &soon, &soon_key);
    let tls = Tls::load(&cert_path, &key_path).unwrap();
    let (addr, _stop) = serve_tls(tls.clone()).await;
    // A renewal that wrote an expired pair is refused; the pair in use stays.
    install(dir.path(), &expired, &expired_key);
    let reload = tls.reload().unwrap_err().to_string();
    assert!(reload.contains("expired at"), "{reload}");
    assert!(!tls.poll());
    let connector = client(&ca.pem, &[&rustls::version::TLS13]);
    let (mut sender, served, _) = connect(&connector, addr).await;
    assert_eq!(served, soon_der);
    assert_eq!(post(&mut sender, "x").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_httpclient_verifies_through_a_truststore() {
    if Command::new("java").arg("-version").output().is_err()
        || Command::new("keytool").arg("-help").output().is_err()
    {
        eprintln!("SKIPPED: no JDK (java, keytool) on this machine; see the README's manual check");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let (cert, key, _) = ca.leaf("first");
    let (cert_path, key_path) = install(dir.path(), &cert, &key);
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, &ca.pem).unwrap();
    let store = dir.path().join("truststore.p12");
    let made = Command::new("keytool")
        .args([
            "-importcert",
            "-noprompt",
            "-alias",
            "test-ca",
            "-storetype",
            "PKCS12",
        ])
        .args(["-storepass", "changeit", "-file"])
        .arg(&ca_path)
        .arg("-keystore")
        .arg(&store)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let source = dir.path().join("Post.java");
    std::fs::write(
        &source,
        r#"
import java.net.URI;
import java.net.http.*;
public class Post {
    public static void main(String[] args) throws Exception {
        HttpClient client = HttpClient.newHttpClient();
        HttpRequest request = HttpRequest.newBuilder(URI.create(args[0]))
            .POST(HttpRequest.BodyPublishers.ofString("from java")).build();
        HttpResponse<String> response = client.send(request, HttpResponse.BodyHandlers.ofString());
        System.out.println(response.statusCode() + " " + response.version() + " " + response.body());
    }
}
"#,
    )
    .unwrap();
    let (addr, _stop) = serve_tls(Tls::load(&cert_path, &key_path).unwrap()).await;
    let run = move |trust: bool| {
        let mut java = Command::new("java");
        if trust {
            java.arg(format!("-Djavax.net.ssl.trustStore={}", store.display()))
                .arg("-Djavax.net.ssl.trustStorePassword=changeit")
                .arg("-Djavax.net.ssl.trustStoreType=PKCS12");
        }
        java.arg(&source)
            .arg(format!("https://localhost:{}/mails", addr.port()))
            .output()
            .unwrap()
    };
    let out = tokio::task::spawn_blocking(move || (run(true), run(false)))
        .await
        .unwrap();
    let (trusted, untrusted) = out;
    assert!(
        trusted.status.success(),
        "{}",
        String::from_utf8_lossy(&trusted.stderr)
    );
    // HTTP/2 is offered by Java and declined: HTTP/1.1 is what is served.
    assert_eq!(
        String::from_utf8_lossy(&trusted.stdout).trim(),
        "200 HTTP_1_1 got 9 bytes"
    );
    assert!(
        !untrusted.status.success(),
        "the default truststore must not accept the test CA"
    );
}

/// The receiver program `cargo test` built beside this test.
fn receiver_program() -> PathBuf {
    let me = std::env::current_exe().unwrap();
    let dir = me.parent().unwrap().parent().unwrap();
    dir.join("examples")
        .join(format!("receiver{}", std::env::consts::EXE_SUFFIX))
}

#[cfg(unix)]
#[test]
fn the_program_serves_https_and_reads_the_pair_again_on_sighup() {
    let program = receiver_program();
    assert!(program.exists(), "{} was not built", program.display());
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let (cert1, key1, _) = ca.leaf("first");
    // The renewal is a certificate near its end: served, with a warning.
    let (cert2, key2, _) = ca.leaf_until("renewed", Some(3));
    let (cert_path, key_path) = install(dir.path(), &cert1, &key1);
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, &ca.pem).unwrap();

    // Both flags or neither; a bad pair stops the start with the reason.
    let only_cert = Command::new(&program)
        .env_clear()
        .args(["--store", "none", "--tls-cert"])
        .arg(&cert_path)
        .output()
        .unwrap();
    assert!(!only_cert.status.success());
    assert!(String::from_utf8_lossy(&only_cert.stderr).contains("--tls-key"));
    let bad = Command::new(&program)
        .env_clear()
        .args(["--store", "none", "--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(&cert_path)
        .arg("--tls-key")
        .arg(&cert_path)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("no usable private key"),
        "{bad:?}"
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(&program)
        .env_clear()
        .env("CMC_TLS_CERT", &cert_path)
        .env("CMC_TLS_KEY", &key_path)
        .args(["--store", "none", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stderr = child.stderr.take().unwrap();
    let child = Kill(child);
    // Drain the log so the child never blocks on it.
    let log = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let subject = |deadline: Duration| -> String {
        let start = Instant::now();
        loop {
            let out = Command::new("curl")
                .args(["-sS", "-v", "--cacert"])
                .arg(&ca_path)
                .args(["-H", "content-type: application/json", "--data-binary"])
                .arg(
                    r#"{"event_type":"bounces","server_composition":"pro","event":{"bounces":[]}}"#,
                )
                .arg(format!("https://localhost:{port}/mails"))
                .output()
                .unwrap();
            let verbose = String::from_utf8_lossy(&out.stderr).into_owned();
            if out.status.success() {
                if let Some(line) = verbose.lines().find(|l| l.contains("subject:")) {
                    return line.to_owned();
                }
            }
            assert!(start.elapsed() < deadline, "no HTTPS answer: {verbose}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    assert!(subject(Duration::from_secs(30)).contains("CN=first"));
    // Renewed on disk; SIGHUP asks for it at once (the poll would too).
    install(dir.path(), &cert2, &key2);
    let hup = Command::new("kill")
        .args(["-HUP", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let start = Instant::now();
    while !subject(Duration::from_secs(10)).contains("CN=renewed") {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "SIGHUP did not take the new pair"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(child);
    let log = log.join().unwrap();
    assert!(log.contains("listening on https://"), "{log}");
    assert!(log.contains("the served certificate expires soon"), "{log}");
    assert!(!log.contains("not valid yet"), "{log}");
    // The key is never logged.
    assert!(!log.contains(key2.lines().nth(1).unwrap()));
}
