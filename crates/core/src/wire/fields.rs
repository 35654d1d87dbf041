//! The top-level parameters of a webhook, collected from any encoding, and
//! their assembly into an [`EventBatch`] or an [`InboundMail`].

use std::collections::BTreeMap;

use crate::event::{Event, EventBatch, EventType};
use crate::inbound::{Attachment, Headers, InboundMail};
use crate::webhook::{Kind, Webhook};
use crate::{ParseError, ParseErrorKind, RawJson, Text};

/// Where a top-level parameter goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    EventType,
    ServerComposition,
    ApiKey,
    Event,
    Filter,
    Headers,
    Subject,
    EnvelopeFrom,
    EnvelopeTo,
    Text,
    Html,
    AttachmentCount,
    Other,
}

impl Slot {
    pub(crate) fn of(name: &str) -> Slot {
        match name {
            "event_type" => Slot::EventType,
            "server_composition" => Slot::ServerComposition,
            "api_key" => Slot::ApiKey,
            "event" => Slot::Event,
            "filter" => Slot::Filter,
            "headers" => Slot::Headers,
            "subject" => Slot::Subject,
            "envelope-from" => Slot::EnvelopeFrom,
            "envelope-to" => Slot::EnvelopeTo,
            "text" => Slot::Text,
            "html" => Slot::Html,
            "attachments" => Slot::AttachmentCount,
            _ => Slot::Other,
        }
    }
}

/// The number in an `attachmentN` field name, when it is one.
pub(crate) fn attachment_number(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("attachment")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.starts_with('0') {
        return None;
    }
    digits.parse().ok()
}

/// The parameters of one webhook call, before its kind is known.
#[derive(Default)]
pub(crate) struct Fields {
    event_type: Option<Text>,
    server_composition: Option<Text>,
    api_key: Option<Text>,
    events: Option<(Vec<Text>, Vec<Event>)>,
    filter: Option<Text>,
    headers: Option<Headers>,
    subject: Option<Text>,
    envelope_from: Option<Text>,
    envelope_to: Option<Text>,
    text: Option<Text>,
    html: Option<Text>,
    attachment_count: Option<Text>,
    /// Attachment parts with their number (`None` for file parts whose
    /// field is not called `attachmentN`).
    attachments: Vec<(Option<u32>, Attachment)>,
    /// The numbers in `attachments`, for the duplicate check.
    attachment_numbers: std::collections::HashSet<u32>,
    extra: BTreeMap<String, RawJson>,
    /// Whether the body was multipart, where the attachment count is checked.
    multipart: bool,
}

fn twice(key: &str) -> ParseError {
    ParseError::new(ParseErrorKind::InvalidField, "field is given twice").at(key)
}

impl Fields {
    pub(crate) fn multipart() -> Fields {
        Fields {
            multipart: true,
            ..Fields::default()
        }
    }

    /// Stores a text parameter; `slot` must be a text slot.
    pub(crate) fn set_text(&mut self, slot: Slot, key: &str, text: Text) -> Result<(), ParseError> {
        let target = match slot {
            Slot::EventType => &mut self.event_type,
            Slot::ServerComposition => &mut self.server_composition,
            Slot::ApiKey => &mut self.api_key,
            Slot::Filter => &mut self.filter,
            Slot::Subject => &mut self.subject,
            Slot::EnvelopeFrom => &mut self.envelope_from,
            Slot::EnvelopeTo => &mut self.envelope_to,
            Slot::Text => &mut self.text,
            Slot::Html => &mut self.html,
            Slot::AttachmentCount => &mut self.attachment_count,
            Slot::Event | Slot::Headers | Slot::Other => {
                return Err(ParseError::new(
                    ParseErrorKind::InvalidField,
                    "expected a JSON value, not text",
                )
                .at(key));
            }
        };
        if target.is_some() {
            return Err(twice(key));
        }
        *target = Some(text);
        Ok(())
    }

    pub(crate) fn set_events(&mut self, events: (Vec<Text>, Vec<Event>)) -> Result<(), ParseError> {
        if self.events.is_some() {
            return Err(twice("event"));
        }
        self.events = Some(events);
        Ok(())
    }

    pub(crate) fn set_headers(&mut self, headers: Headers) -> Result<(), ParseError> {
        if self.headers.is_some() {
            return Err(twice("headers"));
        }
        self.headers = Some(headers);
        Ok(())
    }

    /// Keeps a field this crate does not know; the caller has counted it
    /// against the budget.
    pub(crate) fn set_extra(&mut self, key: &str, value: RawJson) -> Result<(), ParseError> {
        if self.extra.contains_key(key) {
            return Err(twice(key));
        }
        self.extra.insert(key.to_owned(), value);
        Ok(())
    }

    pub(crate) fn add_attachment(
        &mut self,
        number: Option<u32>,
        attachment: Attachment,
    ) -> Result<(), ParseError> {
        if let Some(n) = number
            && !self.attachment_numbers.insert(n)
        {
            return Err(twice(&attachment.field_name));
        }
        self.attachments.push((number, attachment));
        Ok(())
    }

    fn kind(&self) -> Result<Kind, ParseError> {
        let events = self.event_type.is_some() || self.events.is_some();
        let inbound = self.headers.is_some()
            || self.filter.is_some()
            || self.envelope_from.is_some()
            || self.envelope_to.is_some();
        match (events, inbound) {
            (true, false) => Ok(Kind::Events),
            (false, true) => Ok(Kind::Inbound),
            (true, true) => Err(ParseError::new(
                ParseErrorKind::WrongKind,
                "the body has fields of both an event webhook (`event_type`, `event`) and an inbound mail (`headers`, `filter`, `envelope-from`, `envelope-to`)",
            )),
            (false, false) => Err(ParseError::new(
                ParseErrorKind::WrongKind,
                "the body is neither an event webhook (no `event_type` or `event`) nor an inbound mail (no `headers`, `filter` or envelope)",
            )),
        }
    }

    /// Builds the webhook of the kind the fields show; with `expected`, a
    /// body of the other kind is an error that names what arrived.
    pub(crate) fn into_webhook(self, expected: Option<Kind>) -> Result<Webhook, ParseError> {
        let kind = self.kind()?;
        if let Some(expected) = expected
            && expected != kind
        {
            return Err(expected.mismatch());
        }
        match kind {
            Kind::Events => self.into_events().map(Webhook::Events),
            Kind::Inbound => self.into_inbound().map(Webhook::Inbound),
        }
    }

    fn into_events(self) -> Result<EventBatch, ParseError> {
        let event_type = self
            .event_type
            .ok_or_else(|| ParseError::missing("event_type"))?;
        let server_composition = self
            .server_composition
            .ok_or_else(|| ParseError::missing("server_composition"))?;
        let (names, events) = self.events.ok_or_else(|| ParseError::missing("event"))?;
        if !names.contains(&event_type) {
            let found = if names.is_empty() {
                "it is empty".to_owned()
            } else {
                format!(
                    "it has {}",
                    names
                        .iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            return Err(ParseError::new(
                ParseErrorKind::MissingField,
                format!("the list `{event_type}` named by `event_type` is missing; {found}"),
            )
            .at("event"));
        }
        let mut extra = self.extra;
        for (key, value) in [
            ("filter", self.filter),
            ("subject", self.subject),
            ("text", self.text),
            ("html", self.html),
            ("attachments", self.attachment_count),
        ] {
            if let Some(v) = value {
                extra.insert(key.to_owned(), RawJson::string(&v));
            }
        }
        if !self.attachments.is_empty() {
            return Err(ParseError::new(
                ParseErrorKind::WrongKind,
                "an event webhook carries no file parts",
            )
            .at(self.attachments[0].1.field_name.as_str()));
        }
        Ok(EventBatch {
            event_type: EventType::from_text(event_type),
            server_composition,
            api_key: self.api_key,
            events,
            extra,
        })
    }

    fn into_inbound(self) -> Result<InboundMail, ParseError> {
        let server_composition = self
            .server_composition
            .ok_or_else(|| ParseError::missing("server_composition"))?;
        let filter = self.filter.ok_or_else(|| ParseError::missing("filter"))?;
        let headers = self.headers.ok_or_else(|| ParseError::missing("headers"))?;
        let envelope_from = self
            .envelope_from
            .ok_or_else(|| ParseError::missing("envelope-from"))?;
        let envelope_to = self
            .envelope_to
            .ok_or_else(|| ParseError::missing("envelope-to"))?;
        let mut extra = self.extra;
        let mut attachments = self.attachments;
        // Numbered parts first, by number; other file parts after, as sent.
        attachments.sort_by_key(|(n, _)| n.unwrap_or(u32::MAX));
        let numbered = attachments.iter().filter(|(n, _)| n.is_some()).count();
        if let Some(count) = self.attachment_count {
            let declared: Option<usize> = count.trim().parse().ok();
            let consistent = declared == Some(numbered)
                && attachments
                    .iter()
                    .filter_map(|(n, _)| *n)
                    .enumerate()
                    .all(|(i, n)| n as usize == i + 1);
            if self.multipart && !consistent {
                return Err(ParseError::new(
                    ParseErrorKind::InvalidField,
                    format!(
                        "says `{count}` attachments, but the body has {numbered} part(s) named attachment1..attachmentN{}",
                        if numbered > 0 { " (or their numbers have gaps)" } else { "" }
                    ),
                )
                .at("attachments"));
            }
            if !(self.multipart || consistent || declared == Some(0)) {
                // JSON and form bodies carry no files; keep what was said.
                extra.insert("attachments".to_owned(), RawJson::string(&count));
            }
        }
        if let Some(event_type) = self.event_type {
            extra.insert("event_type".to_owned(), RawJson::string(&event_type));
        }
        Ok(InboundMail {
            server_composition,
            filter,
            headers,
            subject: self.subject.unwrap_or_default(),
            envelope_from,
            envelope_to,
            text: self.text,
            html: self.html,
            attachments: attachments.into_iter().map(|(_, a)| a).collect(),
            api_key: self.api_key,
            extra,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachment_numbers() {
        assert_eq!(attachment_number("attachment1"), Some(1));
        assert_eq!(attachment_number("attachment12"), Some(12));
        assert_eq!(attachment_number("attachments"), None);
        assert_eq!(attachment_number("attachment"), None);
        assert_eq!(attachment_number("attachment01"), None);
        assert_eq!(attachment_number("attachment0"), None);
        assert_eq!(attachment_number("attachment99999999999"), None);
    }
}
