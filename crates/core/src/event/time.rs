//! The time of an event: `created` as CMC writes it (civil time in the
//! console's time zone, which the payload does not name), the zone this
//! crate assumes, and why a record may give no instant.

use std::fmt;

use jiff::civil::DateTime;
use jiff::tz::TimeZone;

/// A `created` time as CMC writes it, and as the idempotency key hashes
/// it: `YYYY-MM-DD HH:MM:SS` (with nanoseconds only when there are any),
/// written here rather than by a library's `Display`, whose format could
/// change under the key.
///
/// ```
/// let t = jiff::civil::date(2023, 1, 25).at(14, 3, 9, 0);
/// assert_eq!(cmc_webhook_core::event::format_created(t), "2023-01-25 14:03:09");
/// ```
pub fn format_created(t: DateTime) -> String {
    let mut s = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    if t.subsec_nanosecond() != 0 {
        s.push_str(&format!(".{:09}", t.subsec_nanosecond()));
    }
    s
}

/// Why [`Event::created_at`](crate::Event::created_at) gives no instant.
///
/// ```
/// use bytes::Bytes;
/// use cmc_webhook_core::{default_time_zone, CreatedAtError, EventBatch};
///
/// let body = r#"{"event_type":"deliveries","server_composition":"pro","event":{"deliveries":[
///   {"created":"9999-12-31 23:59:59","status":"queued"}]}}"#;
/// let batch = EventBatch::parse("application/json", Bytes::from(body))?;
/// let err = batch.events[0].created_at(&default_time_zone()).unwrap_err();
/// assert!(matches!(err, CreatedAtError::OutOfRange(_)));
/// assert!(std::error::Error::source(&err).is_some()); // jiff's own error
///
/// let body = r#"{"event_type":"blocks","server_composition":"pro","event":{"blocks":[{}]}}"#;
/// let batch = EventBatch::parse("application/json", Bytes::from(body))?;
/// let err = batch.events[0].created_at(&default_time_zone()).unwrap_err();
/// assert!(matches!(err, CreatedAtError::Unavailable));
/// assert!(std::error::Error::source(&err).is_none());
/// # Ok::<(), cmc_webhook_core::ParseError>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum CreatedAtError {
    /// The record carries no `created` this crate reads: a [`Block`](crate::Block)
    /// (whose `created`, when present, stays text: the record's schema is
    /// not published) or an [`UnknownEvent`](crate::UnknownEvent).
    Unavailable,
    /// `created` read in the time zone is an instant outside the range of
    /// [`jiff::Timestamp`] (about the years -9999 to 9999); the error is
    /// jiff's.
    OutOfRange(jiff::Error),
}

impl fmt::Display for CreatedAtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CreatedAtError::Unavailable => {
                f.write_str("the record carries no `created` time this crate reads")
            }
            CreatedAtError::OutOfRange(_) => {
                f.write_str("`created` in the time zone is out of the supported range")
            }
        }
    }
}

impl std::error::Error for CreatedAtError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CreatedAtError::Unavailable => None,
            CreatedAtError::OutOfRange(e) => Some(e),
        }
    }
}

/// The time zone this crate assumes for `created` when the caller names
/// none: Asia/Tokyo, the documented default of CMC's Japanese customers.
///
/// Taken from the system's time-zone database; where there is none, the
/// fixed offset +09:00, which equals Asia/Tokyo for every date since 1951.
///
/// ```
/// let tz = cmc_webhook_core::default_time_zone();
/// let civil = jiff::civil::date(2023, 1, 25).at(14, 3, 6, 0);
/// let at = civil.to_zoned_datetime(tz)?.timestamp();
/// assert_eq!(at.to_string(), "2023-01-25T05:03:06Z");
/// # Ok::<(), jiff::Error>(())
/// ```
pub fn default_time_zone() -> TimeZone {
    TimeZone::get("Asia/Tokyo").unwrap_or_else(|_| TimeZone::fixed(jiff::tz::Offset::constant(9)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_created_is_cmcs_format() {
        let t = jiff::civil::date(2023, 1, 5).at(4, 3, 6, 0);
        assert_eq!(format_created(t), "2023-01-05 04:03:06");
        let t = jiff::civil::date(2023, 1, 5).at(4, 3, 6, 120);
        assert_eq!(format_created(t), "2023-01-05 04:03:06.000000120");
    }

    #[test]
    fn the_default_zone_is_nine_hours_ahead_in_winter_and_summer() {
        let tz = default_time_zone();
        for (month, hour) in [(1, 5), (7, 5)] {
            let civil = jiff::civil::date(2024, month, 1).at(14, 0, 0, 0);
            let at = civil.to_zoned_datetime(tz.clone()).unwrap().timestamp();
            assert_eq!(
                at.to_string(),
                format!("2024-{month:02}-01T{hour:02}:00:00Z")
            );
        }
    }
}
