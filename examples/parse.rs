//! Parses CMC webhook bodies from files and prints one JSON line per event
//! and per inbound mail.
//!
//! ```text
//! cargo run --example parse                      # every fixture in tests/fixtures
//! cargo run --example parse -- body.json         # Content-Type from the file ending
//! cargo run --example parse -- body.bin 'multipart/form-data; boundary=x'
//! ```
//!
//! The `Content-Type` comes from the ending: `.json`, `.form`
//! (form-urlencoded), or `.multipart` with the type in a `.content-type`
//! file beside it. Attachments print as name, type and size.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bytes::Bytes;
use cmc_webhook::{default_time_zone, Webhook};
use serde_json::json;

fn content_type_of(path: &Path) -> Option<String> {
    match path.extension()?.to_str()? {
        "json" => Some("application/json".into()),
        "form" => Some("application/x-www-form-urlencoded".into()),
        "multipart" => std::fs::read_to_string(path.with_extension("content-type"))
            .ok()
            .map(|s| s.trim().to_owned()),
        _ => None,
    }
}

fn fixtures() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut files: Vec<PathBuf> = [root.clone(), root.join("shared")]
        .iter()
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            content_type_of(p).is_some() && p.extension().is_some_and(|e| e != "content-type")
        })
        .collect();
    files.sort();
    files
}

fn print(source: &Path, webhook: Webhook) {
    let tz = default_time_zone();
    match webhook {
        Webhook::Events(batch) => {
            for event in &batch.events {
                let line = json!({
                    "file": source.file_name().map(|n| n.to_string_lossy()),
                    "server_composition": batch.server_composition,
                    "key": event.idempotency_key(),
                    "at": event.created_at(&tz).ok().map(|t| t.to_string()),
                    "event": event,
                });
                println!("{line}");
            }
        }
        Webhook::Inbound(mail) => {
            let attachments: Vec<_> = mail
                .attachments
                .iter()
                .map(|a| json!({"filename": a.filename, "content_type": a.content_type, "size": a.data.len()}))
                .collect();
            let line = json!({
                "file": source.file_name().map(|n| n.to_string_lossy()),
                "inbound": {
                    "server_composition": mail.server_composition,
                    "filter": mail.filter,
                    "from": mail.envelope_from,
                    "to": mail.envelope_to,
                    "subject": mail.subject,
                    "headers": mail.headers.len(),
                    "text": mail.text,
                    "attachments": attachments,
                },
            });
            println!("{line}");
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        eprintln!(
            "usage: parse [FILE [CONTENT-TYPE]]   (no FILE: every fixture in tests/fixtures)"
        );
        return ExitCode::SUCCESS;
    }
    let jobs: Vec<(PathBuf, Option<String>)> = match args.as_slice() {
        [] => fixtures().into_iter().map(|p| (p, None)).collect(),
        [file] => vec![(file.into(), None)],
        [file, ct] => vec![(file.into(), Some(ct.clone()))],
        _ => {
            eprintln!("usage: parse [FILE [CONTENT-TYPE]]");
            return ExitCode::from(2);
        }
    };
    let mut failed = false;
    for (path, ct) in jobs {
        let Some(ct) = ct.or_else(|| content_type_of(&path)) else {
            eprintln!(
                "{}: name the Content-Type as the second argument",
                path.display()
            );
            failed = true;
            continue;
        };
        let body = match std::fs::read(&path) {
            Ok(body) => Bytes::from(body),
            Err(e) => {
                eprintln!("{}: {e}", path.display());
                failed = true;
                continue;
            }
        };
        match Webhook::parse(&ct, body) {
            Ok(webhook) => print(&path, webhook),
            Err(e) => {
                eprintln!("{}: {e}", path.display());
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
