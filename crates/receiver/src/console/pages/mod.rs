//! The pages, one file each.

pub mod learning;
pub mod login;
pub mod mails;
pub mod overview;
pub mod raw;
pub mod rows;
pub mod search;
pub mod suppressions;

use askama::Template;
use axum::response::{IntoResponse, Response};
use http::StatusCode;

use crate::console::state::Layout;

/// A page that says one thing.
#[derive(Debug, Template)]
#[template(path = "console/message.html")]
pub struct Message {
    /// Around it.
    pub layout: Layout,
    /// Its heading.
    pub title: String,
    /// What it says.
    pub text: String,
    /// A link back.
    pub back: Option<String>,
}

impl Message {
    /// The page with `status`.
    pub fn answer(self, status: StatusCode) -> Response {
        (status, super::html::render(&self)).into_response()
    }
}

/// 404 for every other path.
pub async fn not_found() -> Response {
    Message {
        layout: Layout::anonymous(),
        title: "Not found".into(),
        text: "There is no such page.".into(),
        back: Some("/".into()),
    }
    .answer(StatusCode::NOT_FOUND)
}
