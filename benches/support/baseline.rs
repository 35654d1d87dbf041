//! The structs a careful user writes by hand for CMC's event webhook: the
//! baselines of the parse benchmark, the end-to-end benchmark server and
//! the allocation test (included by path, so all three measure the same).
#![allow(dead_code)]

use std::borrow::Cow;

use serde::Deserialize;

/// What a careful user would write by hand: owned strings.
#[derive(Deserialize)]
pub struct OwnedBatch {
    pub event_type: String,
    pub server_composition: String,
    pub event: OwnedEvent,
}

#[derive(Deserialize)]
pub struct OwnedEvent {
    pub deliveries: Vec<OwnedDelivery>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OwnedDelivery {
    pub created: String,
    pub status: String,
    pub return_path: String,
    pub from: String,
    pub to: String,
    pub message_id: String,
    pub reason: String,
    pub subject: String,
    pub api_data: String,
    pub source_ip: String,
    pub sender_ip: String,
}

/// The same with borrowed strings where the JSON has no escapes.
#[derive(Deserialize)]
pub struct BorrowedBatch<'a> {
    #[serde(borrow)]
    pub event_type: Cow<'a, str>,
    #[serde(borrow)]
    pub server_composition: Cow<'a, str>,
    #[serde(borrow)]
    pub event: BorrowedEvent<'a>,
}

#[derive(Deserialize)]
pub struct BorrowedEvent<'a> {
    #[serde(borrow)]
    pub deliveries: Vec<BorrowedDelivery<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BorrowedDelivery<'a> {
    #[serde(borrow)]
    pub created: Cow<'a, str>,
    #[serde(borrow)]
    pub status: Cow<'a, str>,
    #[serde(borrow)]
    pub return_path: Cow<'a, str>,
    #[serde(borrow)]
    pub from: Cow<'a, str>,
    #[serde(borrow)]
    pub to: Cow<'a, str>,
    #[serde(borrow)]
    pub message_id: Cow<'a, str>,
    #[serde(borrow)]
    pub reason: Cow<'a, str>,
    #[serde(borrow)]
    pub subject: Cow<'a, str>,
    #[serde(borrow)]
    pub api_data: Cow<'a, str>,
    #[serde(borrow)]
    pub source_ip: Cow<'a, str>,
    #[serde(borrow)]
    pub sender_ip: Cow<'a, str>,
}
