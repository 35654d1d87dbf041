//! The raw requests through the inbox: kept refused bodies, listing,
//! bodies read back and pruning.

use std::net::IpAddr;

use bytes::Bytes;

use super::arrival::refused;
use super::types::*;

impl crate::Inbox {
    /// Keeps a body the parser refused, within the budget, on a task of
    /// its own (the refusal is answered at once).
    pub(crate) fn keep_refused(
        &self,
        body: Bytes,
        headers: Headers,
        client: Option<IpAddr>,
        reason: String,
        source: Option<&str>,
    ) {
        if !self.inner.raw.keep {
            return;
        }
        let max = self.inner.refused.max_body();
        let (body, reason) = if body.len() > max {
            let total = body.len();
            (
                body.slice(..max),
                format!("{reason} (the first {max} of {total} bytes kept)"),
            )
        } else {
            (body, reason)
        };
        if !self.inner.refused.take(client, body.len()) {
            tracing::debug!(client = ?client, "a refused body is over the budget of refused bodies: not kept");
            return;
        }
        let Some(kept) = refused(&body, &headers.content_type) else {
            tracing::debug!(
                "a refused body may hold an api_key that could not be redacted: not kept"
            );
            return;
        };
        let raw = NewRaw::new(
            headers,
            client,
            self.now(),
            RawOutcome::Refused,
            Some(cmc_webhook_core::printable(&reason, 1000)),
            source,
            kept,
        );
        let store = self.inner.store.clone();
        tokio::spawn(async move {
            if let Err(e) = store.insert_refused(&raw).await {
                tracing::warn!(error = %e, "could not keep a refused body");
            }
        });
    }

    /// Up to `limit` kept requests with an id above `after`, in order of
    /// id: what arrived, and what it was answered.
    ///
    /// ```
    /// # async fn f(inbox: cmc_webhook_inbox::Inbox) -> Result<(), cmc_webhook_inbox::InboxError> {
    /// for r in inbox.raw_requests(0, 100).await? {
    ///     println!("{} {} {:?} {} bytes", r.id, r.received_at, r.outcome, r.size);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn raw_requests(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<RawRequest>, crate::error::InboxError> {
        self.inner
            .store
            .raw_list(after, i64::try_from(limit).unwrap_or(i64::MAX), None)
            .await
    }

    /// The kept body of raw request `id`, byte for byte (its `api_key`
    /// values redacted), its attachments read back from the mail's: an
    /// error of kind [`Invalid`](crate::InboxErrorKind::Invalid) when it is
    /// not stored (pruned), [`Corrupt`](crate::InboxErrorKind::Corrupt)
    /// when it does not read back (its mail pruned first).
    pub async fn raw_body(&self, id: i64) -> Result<Bytes, crate::error::InboxError> {
        let row = self
            .inner
            .store
            .raw_list(id - 1, 1, Some(&[id]))
            .await?
            .pop()
            .ok_or_else(|| {
                crate::error::InboxError::new(
                    crate::error::InboxErrorKind::Invalid,
                    format!("raw request {id} is not stored (pruned?)"),
                )
            })?;
        self.read_raw_body(&row).await
    }

    pub(crate) async fn read_raw_body(
        &self,
        row: &RawRequest,
    ) -> Result<Bytes, crate::error::InboxError> {
        let corrupt =
            |why: String| crate::error::InboxError::new(crate::error::InboxErrorKind::Corrupt, why);
        match self.inner.store.raw_body(row.id).await? {
            Ok(whole) => {
                check(row.id, &whole, row.size, &row.sha256).map_err(corrupt)?;
                Ok(Bytes::from(whole))
            }
            Err(parts) => {
                // Put back together a part at a time, each reference read
                // from where its bytes are stored.
                let id = row.id;
                let mut body = Vec::with_capacity(usize::try_from(row.size).unwrap_or(0));
                for (start, length, part) in parts {
                    if start != body.len() as i64 {
                        return Err(corrupt(format!(
                            "raw request {id}: a part at {start} is out of place"
                        )));
                    }
                    let gone = |what: String| {
                        corrupt(format!(
                            "raw request {id}: {what} is no longer stored (pruned before it?)"
                        ))
                    };
                    let bytes = match part {
                        StoredPart::Bytes(bytes) => bytes,
                        StoredPart::Attachment(position) => {
                            let mail = row.mail.ok_or_else(|| gone("its mail".into()))?;
                            self.inner
                                .store
                                .attachment(mail, position)
                                .await?
                                .ok_or_else(|| gone(format!("mail {mail}'s part {position}")))?
                        }
                        StoredPart::EventText(key) => {
                            let event = self
                                .inner
                                .store
                                .existing(crate::job::Kind::Event, &key)
                                .await?
                                .ok_or_else(|| gone(format!("event {key}")))?
                                .0;
                            self.inner
                                .store
                                .event_text(event, "subject")
                                .await?
                                .ok_or_else(|| gone(format!("event {key}'s subject")))?
                        }
                    };
                    if bytes.len() as i64 != length {
                        return Err(corrupt(format!(
                            "raw request {id}: the part at {start} is {} bytes, not {length}",
                            bytes.len()
                        )));
                    }
                    body.extend_from_slice(&bytes);
                }
                check(id, &body, row.size, &row.sha256).map_err(corrupt)?;
                Ok(Bytes::from(body))
            }
        }
    }
}
