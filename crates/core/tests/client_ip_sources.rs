//! Each client address source through the layer: the allowlist is decided
//! on the address the source names from a trusted proxy, on the peer from
//! anyone else, and spoofing attempts (a client-written header passed on by
//! a proxy that appends, a second header line, a header sent straight to
//! the server) neither admit a stranger nor turn an allowed client away
//! silently.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{Layer, ServiceExt};

use cmc_webhook_core::client_ip::{ClientIp, ClientIpSource};
use cmc_webhook_core::layer::RequestBody;
use cmc_webhook_core::{ConfigError, WebhookLayer};

/// The layer, allowing 203.0.113.0/24 and 2001:db8:cafe::/48, trusting
/// the proxies 10.0.0.0/8 and fd00::/8, reading `source`.
fn layer(source: ClientIpSource) -> WebhookLayer {
    WebhookLayer::builder()
        .allow_cidrs("203.0.113.0/24, 2001:db8:cafe::/48")
        .unwrap()
        .trust_proxy_cidrs("10.0.0.0/8, fd00::/8")
        .unwrap()
        .api_key("k")
        .client_ip_source(source)
        .build()
        .unwrap()
}

/// The status of a POST from `peer` with `headers`, and the client the
/// layer handed on when it admitted the request.
async fn post(
    layer: &WebhookLayer,
    peer: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, Option<IpAddr>) {
    let inner = tower::service_fn(|req: Request<RequestBody<Full<Bytes>>>| async move {
        let client = req.extensions().get::<ClientIp>().copied();
        let body = client.map(|c| c.to_string()).unwrap_or_default();
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
    });
    let mut request = Request::post("/mails").header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut request = request
        .body(Full::new(Bytes::from_static(br#"{"api_key":"k"}"#)))
        .unwrap();
    let peer: IpAddr = peer.parse().unwrap();
    request.extensions_mut().insert(SocketAddr::new(peer, 4711));
    let response = layer.clone().layer(inner).oneshot(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let client =
        (status == StatusCode::OK).then(|| std::str::from_utf8(&body).unwrap().parse().unwrap());
    (status, client)
}

/// How the platform behind `source` writes `client`.
fn written(source: ClientIpSource, client: &str) -> String {
    match source {
        ClientIpSource::Forwarded if client.contains(':') => format!("for=\"[{client}]\""),
        ClientIpSource::Forwarded => format!("for={client}"),
        ClientIpSource::CloudFrontViewerAddress => format!("{client}:46532"),
        _ => client.to_owned(),
    }
}

const HEADER_SOURCES: [ClientIpSource; 7] = [
    ClientIpSource::XForwardedFor,
    ClientIpSource::Forwarded,
    ClientIpSource::XRealIp,
    ClientIpSource::CfConnectingIp,
    ClientIpSource::TrueClientIp,
    ClientIpSource::FlyClientIp,
    ClientIpSource::CloudFrontViewerAddress,
];

#[tokio::test]
async fn each_source_decides_the_allowlist_on_the_client_its_proxy_names() {
    for source in HEADER_SOURCES {
        let layer = layer(source);
        assert_eq!(layer.client_ip_source(), source);
        let name = source.header().unwrap();
        for (proxy, client) in [
            ("10.0.0.1", "203.0.113.9"),
            ("fd00::1", "203.0.113.9"),
            ("10.0.0.1", "2001:db8:cafe::9"),
            ("::ffff:10.0.0.1", "2001:db8:cafe::9"),
        ] {
            let value = written(source, client);
            assert_eq!(
                post(&layer, proxy, &[(name, &value)]).await,
                (StatusCode::OK, Some(client.parse().unwrap())),
                "{source} from {proxy}: {value}"
            );
        }
        // A client outside the list, through the trusted proxy: refused.
        for stranger in ["198.51.100.1", "2001:db8:beef::1"] {
            let value = written(source, stranger);
            assert_eq!(
                post(&layer, "10.0.0.1", &[(name, &value)]).await.0,
                StatusCode::FORBIDDEN,
                "{source}: {value}"
            );
        }
    }
}

#[tokio::test]
async fn a_header_sent_straight_to_the_server_is_not_believed() {
    for source in HEADER_SOURCES {
        let layer = layer(source);
        let name = source.header().unwrap();
        // A stranger names an allowed address: its own is checked.
        let value = written(source, "203.0.113.9");
        assert_eq!(
            post(&layer, "198.51.100.1", &[(name, &value)]).await.0,
            StatusCode::FORBIDDEN,
            "{source}"
        );
        // An allowed client connecting directly is admitted as itself,
        // whatever it writes in the header.
        let value = written(source, "198.51.100.1");
        assert_eq!(
            post(&layer, "203.0.113.7", &[(name, &value), (name, "garbage")]).await,
            (StatusCode::OK, Some("203.0.113.7".parse().unwrap())),
            "{source}"
        );
    }
}

#[tokio::test]
async fn a_client_written_header_passed_on_by_an_appending_proxy_is_not_believed() {
    // The client writes an allowed address; the proxy appends what it saw.
    let layer = layer(ClientIpSource::XForwardedFor);
    assert_eq!(
        post(
            &layer,
            "10.0.0.1",
            &[("x-forwarded-for", "203.0.113.9, 198.51.100.1")]
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    let layer = self::layer(ClientIpSource::Forwarded);
    assert_eq!(
        post(
            &layer,
            "10.0.0.1",
            &[("forwarded", "for=203.0.113.9, for=198.51.100.1")]
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    // A single-value header the proxy passes on with its own added: two
    // lines, refused rather than either believed.
    for source in &HEADER_SOURCES[2..] {
        let layer = self::layer(*source);
        let name = source.header().unwrap();
        let (forged, real) = (
            written(*source, "203.0.113.9"),
            written(*source, "198.51.100.1"),
        );
        for lines in [[&forged, &real], [&real, &forged]] {
            assert_eq!(
                post(&layer, "10.0.0.1", &[(name, lines[0]), (name, lines[1])])
                    .await
                    .0,
                StatusCode::BAD_REQUEST,
                "{source}"
            );
        }
        // Or one line joined with a comma: not one address.
        let joined = format!("{forged}, {real}");
        assert_eq!(
            post(&layer, "10.0.0.1", &[(name, &joined)]).await.0,
            StatusCode::BAD_REQUEST,
            "{source}"
        );
        // Another source's header, written by the client, decides nothing.
        assert_eq!(
            post(
                &layer,
                "10.0.0.1",
                &[
                    ("x-forwarded-for", "203.0.113.9"),
                    (other(*source), "203.0.113.9"),
                    (name, &real)
                ]
            )
            .await
            .0,
            StatusCode::FORBIDDEN,
            "{source}"
        );
    }
}

/// A single-value header other than `source`'s.
fn other(source: ClientIpSource) -> &'static str {
    if source == ClientIpSource::XRealIp {
        "cf-connecting-ip"
    } else {
        "x-real-ip"
    }
}

#[tokio::test]
async fn malformed_single_values_from_a_trusted_proxy_are_refused_with_400() {
    for source in &HEADER_SOURCES[2..] {
        let layer = layer(*source);
        let name = source.header().unwrap();
        // The proxy is not set to send the header: refused, not taken for
        // the proxy's own address.
        assert_eq!(
            post(&layer, "10.0.0.1", &[]).await.0,
            StatusCode::BAD_REQUEST,
            "{source}"
        );
        for bad in ["", "unknown", "203.0.113.9 x", "203.0.113.", "fe80::1%eth0"] {
            assert_eq!(
                post(&layer, "10.0.0.1", &[(name, bad)]).await.0,
                StatusCode::BAD_REQUEST,
                "{source}: {bad:?}"
            );
        }
        // A port, where the platform writes none; none, where it writes one.
        let wrong_port = if *source == ClientIpSource::CloudFrontViewerAddress {
            "203.0.113.9"
        } else {
            "203.0.113.9:4711"
        };
        assert_eq!(
            post(&layer, "10.0.0.1", &[(name, wrong_port)]).await.0,
            StatusCode::BAD_REQUEST,
            "{source}"
        );
    }
}

#[tokio::test]
async fn the_peer_source_ignores_every_header() {
    let layer = layer(ClientIpSource::Peer);
    let all: Vec<(&str, &str)> = HEADER_SOURCES
        .iter()
        .map(|s| (s.header().unwrap(), "203.0.113.9"))
        .collect();
    // From a trusted proxy too: the proxy is the client.
    assert_eq!(
        post(&layer, "10.0.0.1", &all).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post(&layer, "203.0.113.5", &all).await,
        (StatusCode::OK, Some("203.0.113.5".parse().unwrap()))
    );
}

#[test]
fn a_header_source_without_a_trusted_proxy_does_not_build() {
    for source in HEADER_SOURCES {
        let built = WebhookLayer::builder()
            .allow_cidrs("203.0.113.0/24")
            .unwrap()
            .client_ip_source(source)
            .build();
        let e = built.unwrap_err();
        assert_eq!(e, ConfigError::UntrustedClientIpSource(source));
        assert!(
            e.to_string().contains("trust_proxy") && e.to_string().contains(source.name()),
            "{e}"
        );
    }
    let peer = WebhookLayer::builder()
        .allow_cidrs("203.0.113.0/24")
        .unwrap()
        .client_ip_source(ClientIpSource::Peer)
        .build();
    assert!(peer.is_ok());
    // The default, and the deprecated list-header choice, build as before.
    assert!(
        WebhookLayer::builder()
            .allow_cidrs("203.0.113.0/24")
            .unwrap()
            .build()
            .is_ok()
    );
    #[allow(deprecated)]
    let old = WebhookLayer::builder()
        .allow_cidrs("203.0.113.0/24")
        .unwrap()
        .forwarded_header(cmc_webhook_core::client_ip::ForwardedHeader::Forwarded)
        .build()
        .unwrap();
    assert_eq!(old.client_ip_source(), ClientIpSource::Forwarded);
}
