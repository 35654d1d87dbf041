//! `GET /learning`: learning mode. When the console runs in the
//! receiver's process ([`Console::learn_from`]), the clients outside the
//! allowlist the layer has seen, with their counts (what SIGUSR1 prints),
//! and their addresses as a `--allow` value to copy; when it runs alone,
//! a sentence saying that this list lives in the receiver's memory.

use askama::Template;
use axum::extract::State;
use axum::response::Response;

use crate::console::state::{Console, Layout};
use crate::console::{auth, html};

/// A client seen outside the allowlist.
#[derive(Debug)]
pub struct ClientView {
    addr: String,
    requests: u64,
    first_seen: String,
    last_seen: String,
}

/// The page.
#[derive(Debug, Template)]
#[template(path = "console/learning.html")]
pub struct Learning {
    layout: Layout,
    in_process: bool,
    report_only: bool,
    clients: Vec<ClientView>,
    overflow: u64,
    allow: String,
}

/// `GET /learning`.
pub async fn page(State(console): State<Console>, user: auth::User) -> Response {
    let layout = Layout::of(&user, "learning");
    let Some(layer) = console.layer() else {
        return html::render(&Learning {
            layout,
            in_process: false,
            report_only: false,
            clients: Vec::new(),
            overflow: 0,
            allow: String::new(),
        });
    };
    let mut clients = layer.unlisted_clients();
    clients.sort_by(|a, b| b.requests.cmp(&a.requests).then(a.addr.cmp(&b.addr)));
    let mut addresses: Vec<String> = clients.iter().map(|c| c.addr.to_string()).collect();
    addresses.sort();
    html::render(&Learning {
        layout,
        in_process: true,
        report_only: layer.is_report_only(),
        clients: clients
            .iter()
            .map(|c| ClientView {
                addr: c.addr.to_string(),
                requests: c.requests,
                first_seen: html::time(c.first_seen),
                last_seen: html::time(c.last_seen),
            })
            .collect(),
        overflow: layer.unlisted_overflow(),
        allow: if addresses.is_empty() {
            String::new()
        } else {
            format!("--allow {}", addresses.join(","))
        },
    })
}
