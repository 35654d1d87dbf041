//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use bytes::Bytes;

pub mod child;
pub mod http;
#[cfg(feature = "sqlite")]
pub mod inbox;
pub mod logs;

/// The folder of this crate's fixtures.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The `Content-Type` a fixture is sent with, from its file ending (and the
/// `.content-type` file beside a `.multipart` body).
pub fn content_type_of(path: &Path) -> String {
    match path.extension().and_then(|e| e.to_str()) {
        Some("json") => "application/json".to_owned(),
        Some("form") => "application/x-www-form-urlencoded".to_owned(),
        Some("multipart") => std::fs::read_to_string(path.with_extension("content-type"))
            .expect("a .content-type file beside the .multipart body")
            .trim()
            .to_owned(),
        other => panic!("no content type for fixture ending {other:?}"),
    }
}

/// A fixture's `Content-Type` and body, by path under `tests/fixtures`.
pub fn load(name: &str) -> (String, Bytes) {
    let path = fixtures().join(name);
    let body = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (content_type_of(&path), Bytes::from(body))
}

/// Every body fixture (not the `.content-type` or README files), sorted.
pub fn all_bodies() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in [fixtures(), fixtures().join("shared")] {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("json" | "form" | "multipart")
            ) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}
