//! The suppression list: per recipient, kept from bounce, delivery and
//! `blocks` events by the inbox's worker.
//!
//! Work in progress (issue 14). Here now: the policy as data and the pure
//! function that applies one event to a recipient's state
//! ([`policy::apply`]), and the recipient's normal form. To come, in this
//! order:
//!
//! 1. Tables, in both backends: `cmc_suppressions` (one row per normalised
//!    recipient: the counts, the suppression's reason, since, until, note,
//!    the keys of its events, its source) and `cmc_suppression_history`
//!    (one row per event applied, `UNIQUE (idempotency_key)`, plus the
//!    additions and removals by hand).
//! 2. The worker's round: the `UPDATE ... SET state = 'done'` of events
//!    returns the rows it marked (`RETURNING`, so that a row whose lease
//!    was lost is not counted); for each bounce, succeeded delivery and
//!    block among them, an `INSERT ... ON CONFLICT DO NOTHING` into the
//!    history, and only when it inserted, the recipient's row read,
//!    [`policy::apply`]'d and written, all in the round's transaction: an
//!    event counts once however often it is sent or retried.
//! 3. The API on `Inbox`: `check`, a bulk check (one query per chunk of
//!    addresses, `IN` a JSON array / `= ANY($1)`), `list` with filters and
//!    paging, `add` and `remove` with a note, the history of an address;
//!    the policy set on the worker.
//! 4. The receiver: kept by default with a store; `suppressions check |
//!    list | remove`.

#![allow(dead_code)]

pub(crate) mod policy;

/// A recipient address in the list's normal form: trimmed, and lower-cased
/// whole. `None` for text that is not an address (no `@`, or nothing on
/// one side of it).
///
/// The local part is lower-cased too, although RFC 5321 lets a server
/// treat `John@` and `john@` as two mailboxes: virtually every mailbox
/// provider treats them as one, and suppressing both is the safe mistake
/// (mailing an address that bounced is what costs reputation).
pub(crate) fn normalize(address: &str) -> Option<String> {
    let address = address.trim();
    let (local, domain) = address.rsplit_once('@')?;
    if local.is_empty() || domain.is_empty() || address.chars().any(char::is_whitespace) {
        return None;
    }
    Some(format!(
        "{}@{}",
        local.to_lowercase(),
        domain.to_lowercase()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_are_trimmed_and_lower_cased() {
        assert_eq!(
            normalize(" User@Example.JP ").as_deref(),
            Some("user@example.jp")
        );
        assert_eq!(
            normalize("\"a@b\"@example.jp").as_deref(),
            Some("\"a@b\"@example.jp")
        );
        assert_eq!(
            normalize("ユーザー@例え.JP").as_deref(),
            Some("ユーザー@例え.jp")
        );
        for bad in ["", "user", "@example.jp", "user@", "a b@example.jp"] {
            assert_eq!(normalize(bad), None, "{bad:?}");
        }
    }
}
