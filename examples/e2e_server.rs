//! The two servers of the end-to-end benchmark (`benches/e2e.sh`): this
//! crate's layer and extractor, or a bare axum `Json<T>` handler with
//! hand-written structs; both answer 200 to a CMC event batch.
//!
//! ```text
//! e2e_server crate 127.0.0.1:18091
//! e2e_server bare 127.0.0.1:18092
//! e2e_server body 100 > body.json     # the request body the benchmark posts
//! ```

use std::net::SocketAddr;

use axum::routing::post;
use axum::{Json, Router};
use cmc_webhook::test_util::{encode_events, sample_events, WireEncoding};
use cmc_webhook::{EventBatch, WebhookLayer};

#[path = "../benches/support/baseline.rs"]
mod baseline;

async fn bare(Json(batch): Json<baseline::OwnedBatch>) -> String {
    format!("ok {}\n", batch.event.deliveries.len())
}

async fn with_crate(batch: EventBatch) -> String {
    format!("ok {}\n", batch.events.len())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mode, arg) = match args.as_slice() {
        [mode, arg] => (mode.as_str(), arg.as_str()),
        _ => return Err("usage: e2e_server crate|bare ADDR, or e2e_server body RECORDS".into()),
    };
    let app = match mode {
        "body" => {
            let body = encode_events(&sample_events(arg.parse()?), WireEncoding::Json).body;
            std::io::Write::write_all(&mut std::io::stdout(), &body)?;
            return Ok(());
        }
        "bare" => Router::new().route("/mails", post(bare)),
        "crate" => {
            let layer = WebhookLayer::builder()
                .allow_list("127.0.0.0/8, ::1")?
                .body_limit(2 << 20)
                .build()?;
            Router::new().route("/mails", post(with_crate).layer(layer))
        }
        other => return Err(format!("unknown mode {other}").into()),
    };
    let listener = tokio::net::TcpListener::bind(arg.parse::<SocketAddr>()?).await?;
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
