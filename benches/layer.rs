//! The layer's decision cost: allowlist look-up and the whole admission of
//! a request, with 1, 10 and 1 000 CIDRs, with and without a proxy walk.
//!
//! Run: `cargo bench --bench layer` (and `--features metrics` for the cost
//! of the metrics, with and without a recorder installed).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use cmc_webhook::allowlist::IpSet;
use cmc_webhook::client_ip::ClientIpSource;
use cmc_webhook::WebhookLayer;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use http::{Request, Response};
use http_body_util::Full;
use ipnet::{IpNet, Ipv4Net};
use tower::{Layer, Service};

/// `n` distinct /24 networks spread over the IPv4 space (deterministic),
/// the last one holding 203.0.113.0/24.
fn networks(n: usize) -> Vec<IpNet> {
    let mut nets: Vec<IpNet> = (0..n as u32 - 1)
        .map(|i| {
            let spread = i.wrapping_mul(2_654_435_761) & 0xFFFF_FF00;
            IpNet::V4(Ipv4Net::new(Ipv4Addr::from(spread), 24).unwrap())
        })
        .collect();
    nets.push("203.0.113.0/24".parse().unwrap());
    nets
}

#[path = "support/ready.rs"]
mod support;

use support::ready;

fn request(peer: &str, forwarded: Option<&str>) -> Request<Full<Bytes>> {
    let mut builder = Request::post("/mails")
        .header("content-type", "application/json")
        .header("content-length", "2");
    if let Some(chain) = forwarded {
        builder = builder.header("x-forwarded-for", chain);
    }
    let mut request = builder.body(Full::new(Bytes::from_static(b"{}"))).unwrap();
    request
        .extensions_mut()
        .insert(peer.parse::<SocketAddr>().unwrap());
    request
}

fn decision(c: &mut Criterion) {
    let mut group = c.benchmark_group("layer");
    let client: IpAddr = "203.0.113.7".parse().unwrap();
    for n in [1usize, 10, 1000] {
        let nets = networks(n);
        let set = IpSet::from_nets(nets.clone());
        group.bench_with_input(BenchmarkId::new("allowlist_contains", n), &n, |b, _| {
            b.iter(|| black_box(&set).contains(black_box(client)))
        });

        let inner = tower::service_fn(|_req: Request<_>| async {
            Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::new())))
        });
        let layer = WebhookLayer::builder()
            .allow_nets(nets)
            .trust_proxy("10.0.0.0/8".parse().unwrap())
            .api_key("k")
            .build()
            .unwrap();
        let mut service = layer.layer(inner);
        group.bench_with_input(BenchmarkId::new("admit_direct", n), &n, |b, _| {
            b.iter_batched(
                || request("203.0.113.7:40000", None),
                |req| {
                    let response = ready(service.call(req)).unwrap();
                    assert_eq!(response.status(), 200);
                },
                criterion::BatchSize::SmallInput,
            )
        });
        group.bench_with_input(BenchmarkId::new("admit_via_two_proxies", n), &n, |b, _| {
            b.iter_batched(
                || {
                    request(
                        "10.0.0.1:40000",
                        Some("198.51.100.1, 203.0.113.7, 10.0.0.2"),
                    )
                },
                |req| {
                    let response = ready(service.call(req)).unwrap();
                    assert_eq!(response.status(), 200);
                },
                criterion::BatchSize::SmallInput,
            )
        });
        // A platform's single-value header (Cloudflare's), from a trusted
        // proxy.
        let cloudflare = WebhookLayer::builder()
            .allow_nets(networks(n))
            .trust_proxy("10.0.0.0/8".parse().unwrap())
            .client_ip_source(ClientIpSource::CfConnectingIp)
            .api_key("k")
            .build()
            .unwrap();
        let mut service = cloudflare.layer(tower::service_fn(|_req: Request<_>| async {
            Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::new())))
        }));
        group.bench_with_input(
            BenchmarkId::new("admit_via_cf_connecting_ip", n),
            &n,
            |b, _| {
                b.iter_batched(
                    || {
                        let mut req = request("10.0.0.1:40000", None);
                        req.headers_mut()
                            .insert("cf-connecting-ip", "203.0.113.7".parse().unwrap());
                        req
                    },
                    |req| {
                        let response = ready(service.call(req)).unwrap();
                        assert_eq!(response.status(), 200);
                    },
                    criterion::BatchSize::SmallInput,
                )
            },
        );
    }
    group.finish();
}

/// The same admission with a Prometheus recorder installed (feature
/// `metrics`): what counting each request costs. Runs last, since the
/// recorder stays installed.
#[cfg(feature = "metrics")]
fn decision_with_metrics(c: &mut Criterion) {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).expect("the only recorder");
    let mut group = c.benchmark_group("layer_with_prometheus");
    let inner = tower::service_fn(|_req: Request<_>| async {
        Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::new())))
    });
    let layer = WebhookLayer::builder()
        .allow_nets(networks(1000))
        .trust_proxy("10.0.0.0/8".parse().unwrap())
        .api_key("k")
        .build()
        .unwrap();
    let mut service = layer.layer(inner);
    group.bench_function(BenchmarkId::new("admit_direct", 1000), |b| {
        b.iter_batched(
            || request("203.0.113.7:40000", None),
            |req| {
                let response = ready(service.call(req)).unwrap();
                assert_eq!(response.status(), 200);
            },
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();
    assert!(handle
        .render()
        .contains("cmc_webhook_requests_total{outcome=\"accepted\",reason=\"\"}"));
}

#[cfg(not(feature = "metrics"))]
fn decision_with_metrics(_: &mut Criterion) {}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(40);
    targets = decision, decision_with_metrics
}
criterion_main!(benches);
