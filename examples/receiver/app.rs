//! The receiver's application: a `POST /mails` route that accepts both CMC
//! webhooks behind a `WebhookLayer` and writes one JSON line per event and
//! per inbound mail. Kept apart from `main.rs` so that the end-to-end test
//! runs the same code.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Extension, Router};
use cmc_webhook::client_ip::ClientIp;
use cmc_webhook::{default_time_zone, Attachment, ConfigError, InboundMail, Webhook, WebhookLayer};
use ipnet::IpNet;
use serde_json::{json, Value};

/// What the receiver is configured with (its command-line flags).
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub allow: Vec<IpNet>,
    pub trust_proxy: Vec<IpNet>,
    pub body_limit: usize,
    pub api_keys: Vec<String>,
    pub save_dir: Option<PathBuf>,
}

/// Where the JSON lines go (stdout in the example, a buffer in tests).
pub type Sink = Arc<dyn Fn(String) + Send + Sync>;

#[derive(Clone)]
struct AppState {
    sink: Sink,
    save_dir: Option<Arc<PathBuf>>,
    mails: Arc<AtomicU64>,
}

/// The router: `POST /mails` behind the layer.
pub fn router(options: &Options, sink: Sink) -> Result<Router, ConfigError> {
    let mut layer = WebhookLayer::builder()
        .allow_all(options.allow.iter().copied())
        .body_limit(options.body_limit);
    for net in &options.trust_proxy {
        layer = layer.trust_proxy(*net);
    }
    for key in &options.api_keys {
        layer = layer.api_key(key.clone());
    }
    let state = AppState {
        sink,
        save_dir: options.save_dir.clone().map(Arc::new),
        mails: Arc::default(),
    };
    Ok(Router::new()
        .route("/mails", post(on_webhook).layer(layer.build()?))
        .with_state(state))
}

async fn on_webhook(
    State(state): State<AppState>,
    Extension(ClientIp(client)): Extension<ClientIp>,
    webhook: Webhook,
) -> Result<&'static str, (StatusCode, String)> {
    match webhook {
        Webhook::Events(batch) => {
            let tz = default_time_zone();
            for event in &batch.events {
                let line = json!({
                    "type": "event",
                    "client": client.to_string(),
                    "server_composition": batch.server_composition,
                    "event_type": event.event_type(),
                    "key": event.idempotency_key(),
                    "at": event.created_at(&tz).and_then(Result::ok).map(|t| t.to_string()),
                    "event": event,
                });
                (state.sink)(line.to_string());
            }
        }
        Webhook::Inbound(mail) => {
            let number = state.mails.fetch_add(1, Ordering::Relaxed);
            let saved = match &state.save_dir {
                // An attachment that cannot be stored is a 500: CMC sends the
                // mail again later.
                Some(dir) => save_attachments(dir, number, &mail).await.map_err(|e| {
                    tracing::error!(error = %e, "could not save the attachments");
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "could not store the mail\n".to_owned(),
                    )
                })?,
                None => vec![Value::Null; mail.attachments.len()],
            };
            (state.sink)(inbound_line(&mail, &client.to_string(), saved).to_string());
        }
    }
    Ok("ok\n")
}

fn inbound_line(mail: &InboundMail, client: &str, saved: Vec<Value>) -> Value {
    let attachments: Vec<Value> = mail
        .attachments
        .iter()
        .zip(saved)
        .map(|(a, saved)| {
            let mut o = json!({"filename": a.filename, "content_type": a.content_type, "size": a.data.len()});
            if !saved.is_null() {
                o["saved"] = saved;
            }
            o
        })
        .collect();
    json!({
        "type": "inbound",
        "client": client,
        "server_composition": mail.server_composition,
        "filter": mail.filter,
        "from": mail.envelope_from,
        "to": mail.envelope_to,
        "subject": mail.subject,
        "message_id": mail.headers.get("Message-ID"),
        "headers": mail.headers.len(),
        "text": mail.text,
        "html": mail.html,
        "attachments": attachments,
    })
}

/// Writes each attachment under its sanitised name, prefixed with the
/// mail's and the attachment's number so that names never collide, and
/// never overwrites a file.
async fn save_attachments(
    dir: &Path,
    mail: u64,
    inbound: &InboundMail,
) -> std::io::Result<Vec<Value>> {
    tokio::fs::create_dir_all(dir).await?;
    let stamp = jiff::Timestamp::now().as_millisecond();
    let mut saved = Vec::new();
    for (i, attachment) in inbound.attachments.iter().enumerate() {
        let path = dir.join(file_name(stamp, mail, i, attachment));
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await?;
        tokio::io::AsyncWriteExt::write_all(&mut file, &attachment.data).await?;
        saved.push(Value::String(path.display().to_string()));
    }
    Ok(saved)
}

fn file_name(stamp: i64, mail: u64, index: usize, attachment: &Attachment) -> String {
    format!(
        "{stamp}-{mail}-{}-{}",
        index + 1,
        attachment.safe_filename()
    )
}
