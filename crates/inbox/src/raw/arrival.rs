//! A webhook's rows and, when its request is kept, what is kept of it.

use std::net::IpAddr;

use bytes::Bytes;
use jiff::Timestamp;

use super::keep::{KeptBody, Piece, Stored, keep};
use super::types::*;

/// The rows of `webhook`, with the request it arrived in when `raw` holds
/// its body and headers. A body whose parsed `api_key` was not found to
/// redact is not kept (a warning says so).
pub(crate) fn arrival(
    source: &str,
    webhook: cmc_webhook_core::Webhook,
    client: Option<IpAddr>,
    now: Timestamp,
    raw: Option<(Bytes, Headers)>,
) -> Result<crate::rows::Arrival, crate::error::InboxError> {
    let api_key = match &webhook {
        cmc_webhook_core::Webhook::Events(b) => b.api_key.clone(),
        cmc_webhook_core::Webhook::Inbound(m) => m.api_key.clone(),
    };
    let mut arrival = crate::rows::Arrival::new(source, webhook, client, now)?;
    let Some((body, headers)) = raw else {
        return Ok(arrival);
    };
    let mut stored = Stored::default();
    if let Some(m) = &arrival.mail {
        stored.attachments = m.attachments.iter().map(|a| &a[..]).collect();
        stored.texts = m.apart.iter().map(|(p, b)| (*p, &b[..])).collect();
    }
    stored.subjects = arrival
        .events
        .iter()
        .filter_map(|e| e.subject.as_ref().map(|s| (e.key.as_str(), &s[..])))
        .collect();
    let kept = keep(&body, &headers.content_type, &stored);
    drop(stored);
    drop(body);
    let secret_left = api_key.as_deref().is_some_and(|key| {
        !key.is_empty()
            && (kept.redacted == 0
                || (key.len() >= 8
                    && kept.pieces.iter().any(|p| match p {
                        Piece::Bytes(b) => memchr::memmem::find(b, key.as_bytes()).is_some(),
                        Piece::Attachment { .. } | Piece::EventText { .. } => false,
                    })))
    });
    if secret_left {
        tracing::warn!(
            content_type = %headers.content_type,
            "the request's api_key could not be found to redact: its body is not kept"
        );
        return Ok(arrival);
    }
    arrival.raw = crate::rows::RawRef::Keep(Box::new(NewRaw::new(
        headers,
        client,
        now,
        RawOutcome::Stored,
        None,
        Some(source),
        kept,
    )));
    Ok(arrival)
}

/// The spellings of `api_key` a refused body may hold that the scan
/// redacts: a body holding more of them than it redacted is not kept.
const API_KEY_SPELLINGS: [&[u8]; 3] = [b"api_key", b"api%5fkey", b"api\\u005fkey"];

/// The kept form of a refused body, unless it may hold an `api_key` the
/// scan did not redact (a body cut short, or not well formed).
pub(crate) fn refused(body: &Bytes, content_type: &str) -> Option<KeptBody> {
    let kept = keep(body, content_type, &Stored::default());
    let lower = body.to_ascii_lowercase();
    let mentions: usize = API_KEY_SPELLINGS
        .iter()
        .map(|s| memchr::memmem::find_iter(&lower, s).count())
        .sum();
    (mentions <= kept.redacted).then_some(kept)
}
