//! The receiver's application: a `POST /mails` route that accepts both CMC
//! webhooks behind a `WebhookLayer` and writes one JSON line per event and
//! per inbound mail. Kept apart from `main.rs` so that the end-to-end test
//! runs the same code.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

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
/// given its name: a reader never finds a partial file under the final
/// name, and the line naming the file is printed only once it is complete.
/// When the mail is not saved whole (a write fails, or the request is
/// dropped half-way: a timeout, a client that hung up), every file it
/// wrote is removed, so that a mail CMC sends again leaves no orphans.
///
/// The files are written on a blocking thread, which runs on when the
/// request is dropped; the two sides share a [`Save`] under a lock, so that
/// every file is removed by whichever side learns last that the save was
/// abandoned.
pub async fn save_attachments(
    dir: &Path,
    mail: u64,
    inbound: &InboundMail,
) -> std::io::Result<Vec<Value>> {
    let stamp = jiff::Timestamp::now().as_millisecond();
    let files: Vec<(PathBuf, bytes::Bytes)> = inbound
        .attachments
        .iter()
        .enumerate()
        .map(|(i, a)| (dir.join(file_name(stamp, mail, i, a)), a.data.clone()))
        .collect();
    let save = Arc::new(Mutex::new(Save::default()));
    let guard = Abandon {
        save: save.clone(),
        finished: false,
    };
    let dir = dir.to_owned();
    let task = save.clone();
    tokio::task::spawn_blocking(move || write_all(&dir, files, &task))
        .await
        .map_err(std::io::Error::other)??;
    let paths = guard.finish();
    Ok(paths
        .into_iter()
        .map(|p| Value::String(p.display().to_string()))
        .collect())
}

/// What a save wrote, and whether it was abandoned.
#[derive(Default)]
struct Save {
    written: Vec<PathBuf>,
    abandoned: bool,
}

impl Save {
    /// Records a name just created; `false` (and the name removed) when the
    /// save was abandoned meanwhile.
    fn created(save: &Mutex<Save>, path: &Path) -> bool {
        let mut save = save.lock().unwrap_or_else(|e| e.into_inner());
        if save.abandoned {
            let _ = std::fs::remove_file(path);
            return false;
        }
        save.written.push(path.to_owned());
        true
    }

    /// Removes every name written and marks the save abandoned.
    fn abandon(save: &Mutex<Save>) {
        let mut save = save.lock().unwrap_or_else(|e| e.into_inner());
        save.abandoned = true;
        for path in save.written.drain(..) {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Abandons the save when dropped before [`Abandon::finish`]: the request
/// was dropped (or the save failed).
struct Abandon {
    save: Arc<Mutex<Save>>,
    finished: bool,
}

impl Abandon {
    /// The final names of a save that completed; nothing is removed.
    fn finish(mut self) -> Vec<PathBuf> {
        self.finished = true;
        let mut save = self.save.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut save.written)
            .into_iter()
            .filter(|p| p.extension().is_none_or(|e| e != "part"))
            .collect()
    }
}

impl Drop for Abandon {
    fn drop(&mut self) {
        if !self.finished {
            Save::abandon(&self.save);
        }
    }
}

/// The blocking side of [`save_attachments`].
fn write_all(
    dir: &Path,
    files: Vec<(PathBuf, bytes::Bytes)>,
    save: &Mutex<Save>,
) -> std::io::Result<()> {
    use std::io::Write as _;
    let abandoned =
        || std::io::Error::new(std::io::ErrorKind::Interrupted, "the request was dropped");
    for (path, data) in files {
        let temp = dir.join(format!(
            ".{}.part",
            path.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("attachment")
        ));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        if !Save::created(save, &temp) {
            return Err(abandoned());
        }
        file.write_all(&data)?;
        file.flush()?;
        file.sync_all()?;
        // A hard link, unlike a rename, fails when `path` exists: no file
        // is ever replaced.
        std::fs::hard_link(&temp, &path)?;
        if !Save::created(save, &path) {
            return Err(abandoned());
        }
        // The new name is durable once the directory is synced.
        std::fs::File::open(dir)?.sync_all()?;
        std::fs::remove_file(&temp)?;
    }
    Ok(())
}

fn file_name(stamp: i64, mail: u64, index: usize, attachment: &Attachment) -> String {
    format!(
        "{stamp}-{mail}-{}-{}",
        index + 1,
        attachment.safe_filename()
    )
}
