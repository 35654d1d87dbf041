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
                // mail again later. A mail without attachments never
                // touches the directory.
                Some(dir) if !mail.attachments.is_empty() => {
                    save_attachments(dir, number, &mail).await.map_err(|e| {
                        tracing::error!(error = %e, "could not save the attachments");
                        (
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "could not store the mail\n".to_owned(),
                        )
                    })?
                }
                _ => vec![Value::Null; mail.attachments.len()],
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

/// Checks at start-up that attachments can be saved in `dir`: creates it
/// if needed, then writes, syncs and removes a probe file.
pub fn check_save_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let probe = dir.join(format!(".probe-{}", std::process::id()));
    let result =
        std::fs::write(&probe, b"probe").and_then(|()| std::fs::File::open(&probe)?.sync_all());
    let _ = std::fs::remove_file(&probe);
    result
}

/// Writes each attachment under its sanitised name, prefixed with the
/// mail's and the attachment's number so that names never collide, and
/// never overwrites a file.
///
/// Each file is written under a temporary name, flushed and synced, then
/// given its name: a reader never finds a partial file under the final name, and
/// the line naming the file is printed only once it is complete. When one
/// fails, the files of the mail already saved are removed, so that a mail
/// CMC sends again leaves no orphans.
async fn save_attachments(
    dir: &Path,
    mail: u64,
    inbound: &InboundMail,
) -> std::io::Result<Vec<Value>> {
    let stamp = jiff::Timestamp::now().as_millisecond();
    let mut saved: Vec<PathBuf> = Vec::new();
    for (i, attachment) in inbound.attachments.iter().enumerate() {
        let path = dir.join(file_name(stamp, mail, i, attachment));
        match save_one(dir, &path, &attachment.data).await {
            Ok(()) => saved.push(path),
            Err(e) => {
                for path in &saved {
                    let _ = tokio::fs::remove_file(path).await;
                }
                return Err(e);
            }
        }
    }
    Ok(saved
        .into_iter()
        .map(|p| Value::String(p.display().to_string()))
        .collect())
}

/// Writes `data` to a temporary file in `dir`, syncs it, and links it to
/// `path` unless a file of that name exists; the temporary name is always
/// removed.
async fn save_one(dir: &Path, path: &Path, data: &[u8]) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt as _;
    let temp = dir.join(format!(
        ".{}.part",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("attachment")
    ));
    let mut linked = false;
    let written = async {
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .await?;
        file.write_all(data).await?;
        file.flush().await?;
        file.sync_all().await?;
        // A hard link, unlike a rename, fails when `path` exists: no file
        // is ever replaced.
        tokio::fs::hard_link(&temp, path).await?;
        linked = true;
        // The new name is durable once the directory is synced.
        tokio::fs::File::open(dir).await?.sync_all().await
    }
    .await;
    let _ = tokio::fs::remove_file(&temp).await;
    if written.is_err() && linked {
        // Linked but the directory not synced: the file is not reported.
        let _ = tokio::fs::remove_file(path).await;
    }
    written
}

fn file_name(stamp: i64, mail: u64, index: usize, attachment: &Attachment) -> String {
    format!(
        "{stamp}-{mail}-{}-{}",
        index + 1,
        attachment.safe_filename()
    )
}
