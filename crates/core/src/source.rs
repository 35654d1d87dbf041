//! [`Source`]: which CMC account (contract, server composition) a request
//! came from, as the [`WebhookLayer`](crate::WebhookLayer) decided it, and
//! the console time zone its `created` times are written in.
//!
//! A layer configured for one account (the builder's `api_key`,
//! `basic_auth`, `time_zone`) has one source, the [default](Source::default)
//! one, named `default`. Named sources are configured with
//! [`WebhookLayerBuilder::source`](crate::WebhookLayerBuilder::source).

use std::fmt;
use std::sync::Arc;

use jiff::tz::TimeZone;

use crate::{CreatedAtError, Event, default_time_zone};

/// The name of the source of a layer configured for one account.
pub const DEFAULT_SOURCE: &str = "default";

/// The CMC account a webhook came from: its name, its console time zone
/// and, when it has one, the path it is served on. Never its credentials.
///
/// The layer puts it in the request's extensions when the request's head
/// decides it (a path, BASIC credentials, or a single source), and the
/// body readers give it back with the webhook ([`read_sourced_webhook`],
/// the [`Sourced`](crate::Sourced) extractor) when the body's `api_key`
/// decides it. Without a layer, it is the [default](Source::default).
///
/// ```
/// use bytes::Bytes;
/// use cmc_webhook_core::{EventBatch, Source};
///
/// let source = Source::default();
/// assert_eq!(source.name(), "default");
/// let body = r#"{"event_type":"bounces","server_composition":"pro","event":{"bounces":[
///   {"created":"2023-01-25 14:06:07","status":"2","to":"a@example.jp"}]}}"#;
/// let batch = EventBatch::parse("application/json", Bytes::from(body))?;
/// // Read in the source's console zone (Asia/Tokyo by default).
/// assert_eq!(source.created_at(&batch.events[0])?.to_string(), "2023-01-25T05:06:07Z");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// [`read_sourced_webhook`]: crate::read_sourced_webhook
#[derive(Clone)]
pub struct Source(Arc<Inner>);

struct Inner {
    name: Arc<str>,
    time_zone: TimeZone,
    path: Option<Arc<str>>,
}

impl Source {
    /// A source named `name`, reading `created` in `time_zone`, served on
    /// `path` when it has one. The layer's builder makes these; build one
    /// yourself for a test or a handler run outside the layer.
    ///
    /// ```
    /// let source = cmc_webhook_core::Source::new("sandbox", jiff::tz::TimeZone::UTC, None);
    /// assert_eq!(source.name(), "sandbox");
    /// assert_eq!(source.time_zone(), &jiff::tz::TimeZone::UTC);
    /// ```
    pub fn new(name: impl Into<String>, time_zone: TimeZone, path: Option<String>) -> Source {
        Source(Arc::new(Inner {
            name: Arc::from(name.into()),
            time_zone,
            path: path.map(Arc::from),
        }))
    }

    /// The source's name, as configured (`default` for a layer configured
    /// for one account).
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The zone set in this account's CMC console, in which its `created`
    /// times are written.
    pub fn time_zone(&self) -> &TimeZone {
        &self.0.time_zone
    }

    /// The path this source is served on, when it has one of its own.
    pub fn path(&self) -> Option<&str> {
        self.0.path.as_deref()
    }

    /// Whether this is the source of a layer configured for one account.
    pub fn is_default(&self) -> bool {
        &*self.0.name == DEFAULT_SOURCE
    }

    /// When `event` happened, reading its `created` in this source's zone:
    /// [`Event::created_at`] with [`time_zone`](Self::time_zone).
    pub fn created_at(&self, event: &Event) -> Result<jiff::Timestamp, CreatedAtError> {
        event.created_at(&self.0.time_zone)
    }

    /// The name, shared (a metrics label without a copy).
    #[cfg(feature = "metrics")]
    pub(crate) fn name_arc(&self) -> &Arc<str> {
        &self.0.name
    }
}

impl Default for Source {
    /// The source `default`, in [`default_time_zone`] (Asia/Tokyo), on no
    /// path of its own.
    fn default() -> Source {
        Source::new(DEFAULT_SOURCE, default_time_zone(), None)
    }
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Source")
            .field("name", &self.name())
            .field(
                "time_zone",
                &self.0.time_zone.iana_name().unwrap_or("(fixed offset)"),
            )
            .field("path", &self.path())
            .finish()
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
