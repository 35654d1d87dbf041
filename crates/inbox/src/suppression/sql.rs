//! The statements both backends run on the suppression list, with `?N`
//! parameters (PostgreSQL turns them into `$N`).

/// The columns a check selects, in this order: a row's suppression, not
/// its counts and events, which a check does not read.
pub const CHECK_COLUMNS: &str = "recipient, reason, @ms(since), @ms(until), note";

/// The rows of chosen addresses: `IN` a list the backend binds its way.
pub const LIST: &str = "SELECT recipient, reason, @ms(since), @ms(until), note, @json(events), \
     hard_count, @json(soft_times), unknown_count, @ms(updated_at) FROM cmc_suppressions \
     WHERE (?1 IS NULL OR reason = ?1) \
     AND (?2 = 0 OR (reason IS NOT NULL AND (until IS NULL OR until > @ts(?3)))) \
     AND (?4 IS NULL OR recipient > ?4) ORDER BY recipient LIMIT ?5";
/// Up to `?3` changes of `?1`'s row older than the change `?2`, newest
/// first: a range of the index on (recipient, id), however long the
/// history.
pub const HISTORY: &str = "SELECT change, idempotency_key, reason, note, @ms(at), source, id \
     FROM cmc_suppression_history WHERE recipient = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3";
/// How many changes `?1`'s row has had.
pub const HISTORY_COUNT: &str = "SELECT COUNT(*) FROM cmc_suppression_history WHERE recipient = ?1";
/// An unsubscribed address stays so: an entry by hand would end it.
pub const ADD: &str = "INSERT INTO cmc_suppressions (recipient, reason, since, until, note, \
     events, updated_at) VALUES (?1, 'manual', @ts(?2), @ts(?3), ?4, '[]', @ts(?2)) \
     ON CONFLICT (recipient) DO UPDATE SET reason = 'manual', since = @ts(?2), \
     until = @ts(?3), note = ?4, events = '[]', updated_at = @ts(?2) \
     WHERE cmc_suppressions.reason IS DISTINCT FROM 'unsubscribed'";
pub const REMOVE: &str = "UPDATE cmc_suppressions SET reason = NULL, since = NULL, \
     until = NULL, note = ?2, events = '[]', hard_count = 0, soft_times = '[]', \
     unknown_count = 0, updated_at = @ts(?3) WHERE recipient = ?1";
/// Whether a row exists (a success for an address without one changes
/// nothing, and is not written down).
pub const EXISTS: &str = "SELECT 1 FROM cmc_suppressions WHERE recipient = ?1";
pub const NOTE: &str = "INSERT INTO cmc_suppression_history (recipient, idempotency_key, \
     change, reason, note, at) VALUES (?1, NULL, ?2, ?3, ?4, @ts(?5))";

/// Whether the list waits to be re-keyed to the addresses' new form.
pub const REKEY_PENDING: &str = "SELECT COUNT(*) FROM cmc_suppressions_rekey";
/// The rows whose address may change form: those that are not ASCII.
pub const REKEY_ROWS: &str = "SELECT reason, @ms(since), @ms(until), note, @json(events), \
     hard_count, @json(soft_times), unknown_count, recipient FROM cmc_suppressions \
     WHERE octet_length(recipient) <> length(recipient)";
pub const REKEY_ONE: &str = "SELECT reason, @ms(since), @ms(until), note, @json(events), \
     hard_count, @json(soft_times), unknown_count FROM cmc_suppressions WHERE recipient = ?1";
pub const REKEY_PUT: &str = "INSERT INTO cmc_suppressions (recipient, reason, since, until, \
     note, events, hard_count, soft_times, unknown_count, updated_at) \
     VALUES (?1, ?2, @ts(?3), @ts(?4), ?5, @jsonb(?6), ?7, @jsonb(?8), ?9, @ts(?10)) \
     ON CONFLICT (recipient) DO UPDATE \
     SET reason = ?2, since = @ts(?3), until = @ts(?4), note = ?5, events = @jsonb(?6), \
     hard_count = ?7, soft_times = @jsonb(?8), unknown_count = ?9, updated_at = @ts(?10)";
pub const REKEY_DROP: &str = "DELETE FROM cmc_suppressions WHERE recipient = ?1";
pub const REKEY_HISTORY: &str =
    "UPDATE cmc_suppression_history SET recipient = ?2 WHERE recipient = ?1";
pub const REKEY_DONE: &str = "DELETE FROM cmc_suppressions_rekey";
