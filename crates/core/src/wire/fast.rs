//! A fast path for the JSON CMC writes: an event batch whose records are
//! flat objects of string values. It scans the bytes itself (the end of
//! each string found sixteen bytes at a time, CMC's record keys known by
//! their bytes) instead of going through serde, and builds the model with
//! the same code as the general path ([`RecordFields`], [`Fields`]).
//!
//! It gives **the same result or none**: anything it does not handle
//! (numbers, `null`, `true`, nested values, inbound mails, `blocks` and
//! unknown lists, an invalid escape), any error, and any cap reached make
//! it give up, and the caller runs the general path on the same text from
//! the start (restoring the [`Budget`]'s counts). So it never decides an
//! error, and a body it takes is one the general path takes the same way;
//! `fuzz/fuzz_targets/fast_path.rs` and `tests/fast_path.rs` check it.

use crate::event::Event;
use crate::{RawJson, Text};

use super::budget::Budget;
use super::de::{RecordFields, RecordKey, parse_created, parse_ip, reserve_records, set_once};
use super::fields::{Fields, Slot};
use crate::mime::percent::hex_pair;

/// Why the fast path gave up: the general path decides.
#[derive(Debug)]
pub(crate) struct GiveUp;

type Fast<T> = Result<T, GiveUp>;

/// Errors of the shared record code, only ever turned into [`GiveUp`].
type DeError = serde::de::value::Error;

impl From<DeError> for GiveUp {
    fn from(_: DeError) -> GiveUp {
        GiveUp
    }
}

impl From<crate::ParseError> for GiveUp {
    fn from(_: crate::ParseError) -> GiveUp {
        GiveUp
    }
}

impl From<String> for GiveUp {
    fn from(_: String) -> GiveUp {
        GiveUp
    }
}

thread_local! {
    /// Whether the fast path is tried on this thread: always, except where
    /// a differential test turns it off to run the general path alone.
    static ENABLED: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

/// Runs `f` with the fast path off on this thread: the general path
/// decides alone (for tests that compare the two).
#[cfg(any(test, feature = "test-util"))]
pub(crate) fn without<T>(f: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            ENABLED.with(|e| e.set(self.0));
        }
    }
    let _restore = Restore(ENABLED.with(|e| e.replace(false)));
    f()
}

fn enabled() -> Fast<()> {
    if ENABLED.with(std::cell::Cell::get) {
        Ok(())
    } else {
        Err(GiveUp)
    }
}

/// A whole JSON body's top-level fields, when the fast path handles it.
pub(crate) fn fields(body: &Text, budget: &Budget) -> Fast<Fields> {
    enabled()?;
    let mut s = Scanner::new(body);
    let fields = s.top_level(budget)?;
    s.end()?;
    Ok(fields)
}

/// The `event` JSON text of a form or multipart body, when the fast path
/// handles it.
pub(crate) fn events(text: &Text, budget: &Budget) -> Fast<(Vec<Text>, Vec<Event>)> {
    enabled()?;
    let mut s = Scanner::new(text);
    let events = s.events(budget)?;
    s.end()?;
    Ok(events)
}

/// Where, from `at`, the next byte that ends a plain run of a JSON string
/// is: a quote, a backslash, or a control character (which JSON forbids
/// raw).
///
/// Sixteen bytes at a time: [`block_hit`] is written so that the compiler
/// turns it into vector compares on targets that have them (SSE2, which
/// every x86-64 CPU has; NEON on aarch64) and into plain byte compares
/// elsewhere. There is no code per architecture: the same portable Rust
/// runs everywhere. The last bytes of the text, fewer than a block, are
/// copied into a block padded with a byte that ends nothing.
///
/// (Callgrind, 2 000 parses of 100 records: eight bytes a step with the
/// has-zero-byte test, and memchr past 32 bytes, took 1.48 G instructions;
/// this, 1.41 G; with the key match of [`known_record_key`], 1.17 G.)
fn special(b: &[u8], at: usize) -> Option<usize> {
    let rest = b.get(at..)?;
    let mut blocks = rest.chunks_exact(BLOCK);
    let mut base = at;
    for chunk in blocks.by_ref() {
        let block = <&[u8; BLOCK]>::try_from(chunk).ok()?;
        if let Some(hit) = block_hit(block) {
            return Some(base + hit);
        }
        base += BLOCK;
    }
    let tail = blocks.remainder();
    let mut padded = [b' '; BLOCK];
    padded[..tail.len()].copy_from_slice(tail);
    block_hit(&padded).map(|hit| base + hit)
}

/// The bytes [`special`] looks at in one step.
const BLOCK: usize = 16;

/// The first byte of `block` that ends a plain run, if any.
#[inline(always)]
fn block_hit(block: &[u8; BLOCK]) -> Option<usize> {
    // One flag byte per input byte (0xff where it ends a run): a loop of
    // compares without branches, which vectorises.
    let mut flags = [0u8; BLOCK];
    for (flag, &c) in flags.iter_mut().zip(block) {
        *flag = u8::from((c == b'"') | (c == b'\\') | (c < 0x20)).wrapping_neg();
    }
    // The lowest flagged byte.
    let flags = u128::from_le_bytes(flags);
    (flags != 0).then(|| (flags.trailing_zeros() / 8) as usize)
}

/// The record key that `rest` (the bytes after a key's opening quote)
/// spells plainly, and its length with the closing quote; `None` for
/// anything else, including a known name written with escapes. Agrees
/// with [`RecordKey::of`] (a unit test checks every name).
fn known_record_key(rest: &[u8]) -> Option<(RecordKey, usize)> {
    macro_rules! is {
        ($key:ident, $lit:literal) => {
            rest.starts_with($lit)
                .then_some((RecordKey::$key, $lit.len()))
        };
    }
    match *rest.first()? {
        b'c' => is!(Created, b"created\""),
        b's' => match *rest.get(1)? {
            b't' => is!(Status, b"status\""),
            b'u' => is!(Subject, b"subject\""),
            b'o' => is!(SourceIp, b"sourceIp\""),
            b'e' => is!(SenderIp, b"senderIp\""),
            _ => None,
        },
        b'r' => match *rest.get(2)? {
            b't' => is!(ReturnPath, b"returnPath\""),
            b'a' => is!(Reason, b"reason\""),
            _ => None,
        },
        b'e' => match *rest.get(8)? {
            b'F' => is!(EnvelopeFrom, b"envelopeFrom\""),
            b'T' => is!(EnvelopeTo, b"envelopeTo\""),
            _ => None,
        },
        b'f' => is!(From, b"from\""),
        b't' => is!(To, b"to\""),
        b'm' => is!(MessageId, b"messageId\""),
        b'a' => is!(ApiData, b"apiData\""),
        _ => None,
    }
}

/// A string as read: a slice of the text when it has no escapes, or its
/// decoded characters.
enum Str<'a> {
    Plain(&'a str),
    /// Made from the scanner's scratch buffer: one allocation of its size.
    Decoded(Text),
}

impl Str<'_> {
    fn as_str(&self) -> &str {
        match self {
            Str::Plain(s) => s,
            Str::Decoded(s) => s,
        }
    }

    /// As the general path makes it: shared with the buffer when plain.
    fn into_text(self, ctx: &Text) -> Text {
        match self {
            Str::Plain(s) => ctx.share(s),
            Str::Decoded(s) => s,
        }
    }
}

struct Scanner<'a> {
    ctx: &'a Text,
    text: &'a str,
    b: &'a [u8],
    at: usize,
    /// Where escaped strings are decoded, reused from one to the next.
    scratch: String,
}

impl<'a> Scanner<'a> {
    fn new(ctx: &'a Text) -> Scanner<'a> {
        let text: &'a str = ctx.as_str();
        Scanner {
            ctx,
            text,
            b: text.as_bytes(),
            at: 0,
            scratch: String::new(),
        }
    }

    /// JSON's white space: space, tab, line feed, carriage return.
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.at) {
            self.at += 1;
        }
    }

    /// The next byte after white space, not consumed.
    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> Fast<()> {
        if self.peek() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(GiveUp)
        }
    }

    /// Only white space is left.
    fn end(&mut self) -> Fast<()> {
        self.ws();
        if self.at == self.b.len() {
            Ok(())
        } else {
            Err(GiveUp)
        }
    }

    /// Whether the object or array goes on (a `,` was eaten) or ends (its
    /// closing byte was eaten).
    fn more(&mut self, close: u8) -> Fast<bool> {
        match self.peek() {
            Some(b',') => {
                self.at += 1;
                Ok(true)
            }
            Some(c) if c == close => {
                self.at += 1;
                Ok(false)
            }
            _ => Err(GiveUp),
        }
    }

    /// Opens an object or array: whether it has a first member.
    fn open(&mut self, open: u8, close: u8) -> Fast<bool> {
        self.eat(open)?;
        if self.peek() == Some(close) {
            self.at += 1;
            return Ok(false);
        }
        Ok(true)
    }

    /// A string (the next value must be one): a slice of the text when it
    /// has no escapes, its decoded characters otherwise.
    #[inline]
    fn string(&mut self) -> Fast<Str<'a>> {
        self.eat(b'"')?;
        let start = self.at;
        let end = special(self.b, start).ok_or(GiveUp)?;
        if self.b.get(end) == Some(&b'"') {
            self.at = end + 1;
            return self.text.get(start..end).map(Str::Plain).ok_or(GiveUp);
        }
        self.escaped_string(start)
    }

    /// The string from `start` (after its opening quote), which has
    /// escapes (or a raw control character, refused), decoded as serde_json
    /// decodes it, in the scratch buffer; out of the hot path of plain
    /// strings.
    #[inline(never)]
    fn escaped_string(&mut self, start: usize) -> Fast<Str<'a>> {
        self.at = start;
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        let result = self.decode_into(&mut out);
        let decoded = result.map(|()| Str::Decoded(Text::from(out.as_str())));
        self.scratch = out;
        decoded
    }

    /// A string value's JSON text, quotes and escapes as written: what the
    /// general path keeps of an unknown key's value.
    fn raw_string(&mut self) -> Fast<&'a str> {
        self.ws();
        let start = self.at;
        self.string()?;
        Ok(&self.text[start..self.at])
    }

    /// The rest of a string with escapes into `out`; anything serde_json
    /// would refuse gives up.
    fn decode_into(&mut self, out: &mut String) -> Fast<()> {
        loop {
            let from = self.at;
            // An escape right after another one, or the closing quote after
            // it, needs no search (strings of escapes cost a search each).
            let stop = match self.b.get(from) {
                Some(b'\\' | b'"') => from,
                _ => special(self.b, from).ok_or(GiveUp)?,
            };
            out.push_str(self.text.get(from..stop).ok_or(GiveUp)?);
            self.at = stop + 1;
            match self.b[stop] {
                b'"' => return Ok(()),
                b'\\' => {}
                // A raw control character: not allowed in a JSON string.
                _ => return Err(GiveUp),
            }
            let escape = *self.b.get(self.at).ok_or(GiveUp)?;
            self.at += 1;
            match escape {
                b'"' => out.push('"'),
                b'\\' => out.push('\\'),
                b'/' => out.push('/'),
                b'b' => out.push('\u{8}'),
                b'f' => out.push('\u{c}'),
                b'n' => out.push('\n'),
                b'r' => out.push('\r'),
                b't' => out.push('\t'),
                b'u' => {
                    let unit = self.hex4()?;
                    let c = match unit {
                        0xD800..=0xDBFF => {
                            // A leading surrogate must be followed by a
                            // trailing one.
                            if self.b.get(self.at..self.at + 2) != Some(b"\\u") {
                                return Err(GiveUp);
                            }
                            self.at += 2;
                            let low = self.hex4()?;
                            if !(0xDC00..=0xDFFF).contains(&low) {
                                return Err(GiveUp);
                            }
                            let code = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                            char::from_u32(code).ok_or(GiveUp)?
                        }
                        0xDC00..=0xDFFF => return Err(GiveUp),
                        _ => char::from_u32(unit).ok_or(GiveUp)?,
                    };
                    out.push(c);
                }
                _ => return Err(GiveUp),
            }
        }
    }

    fn hex4(&mut self) -> Fast<u32> {
        let digits = self.b.get(self.at..self.at + 4).ok_or(GiveUp)?;
        let hi = hex_pair(digits[0], digits[1]).ok_or(GiveUp)?;
        let lo = hex_pair(digits[2], digits[3]).ok_or(GiveUp)?;
        self.at += 4;
        Ok(u32::from(u16::from_be_bytes([hi, lo])))
    }

    /// An object key and its `:`.
    fn key(&mut self) -> Fast<Str<'a>> {
        let key = self.string()?;
        self.eat(b':')?;
        Ok(key)
    }

    /// The top-level object of an event batch, read as the general path's
    /// `TopLevelSeed` reads it.
    fn top_level(&mut self, budget: &Budget) -> Fast<Fields> {
        let mut fields = Fields::default();
        if !self.open(b'{', b'}')? {
            return Ok(fields);
        }
        loop {
            let key = self.key()?;
            let key = key.as_str();
            match Slot::of(key) {
                Slot::Event => {
                    let events = self.events(budget)?;
                    fields.set_events(events)?;
                }
                // Inbound mails, which the fast path leaves alone.
                Slot::Headers => return Err(GiveUp),
                Slot::Other => {
                    budget.unknown_field()?;
                    let raw = self.raw_string()?;
                    let value = RawJson::from_text_unchecked(self.ctx.share(raw));
                    fields.set_extra(key, value)?;
                }
                Slot::ApiKey => {
                    let value = self.string()?;
                    let value = value.into_text(self.ctx);
                    budget.check_key(&value)?;
                    fields.set_text(Slot::ApiKey, "api_key", value)?;
                }
                slot => {
                    let value = self.string()?;
                    fields.set_text(slot, key, value.into_text(self.ctx))?;
                }
            }
            if !self.more(b'}')? {
                return Ok(fields);
            }
        }
    }

    /// The `event` object, as `EventsSeed` reads it: delivery and bounce
    /// lists only.
    fn events(&mut self, budget: &Budget) -> Fast<(Vec<Text>, Vec<Event>)> {
        let mut names: Vec<Text> = Vec::with_capacity(1);
        let mut events = Vec::new();
        if !self.open(b'{', b'}')? {
            return Ok((names, events));
        }
        loop {
            let name = self.key()?.into_text(self.ctx);
            budget.unknown_field()?;
            // A handful of lists: a linear search is the duplicate check.
            if names.contains(&name) {
                return Err(GiveUp);
            }
            let bounce = match name.as_str() {
                "deliveries" => false,
                "bounces" => true,
                _ => return Err(GiveUp),
            };
            self.records(budget, bounce, &mut events)?;
            names.push(name);
            if !self.more(b'}')? {
                return Ok((names, events));
            }
        }
    }

    /// One list of delivery or bounce records, as `RecordsSeed` reads it.
    fn records(&mut self, budget: &Budget, bounce: bool, out: &mut Vec<Event>) -> Fast<()> {
        reserve_records(out, self.ctx.len() / 400, budget);
        if !self.open(b'[', b']')? {
            return Ok(());
        }
        let mut fields = RecordFields::default();
        loop {
            budget.record()?;
            self.record(budget, &mut fields)?;
            let fields = std::mem::take(&mut fields);
            out.push(if bounce {
                Event::Bounce(fields.into_bounce::<DeError>()?)
            } else {
                Event::Delivery(fields.into_delivery::<DeError>()?)
            });
            if !self.more(b']')? {
                return Ok(());
            }
        }
    }

    /// A record's key and its `:`. One of CMC's names written plainly (the
    /// common case) is recognised from its bytes and closing quote, without
    /// scanning it as a string first; any other key is read as a string.
    fn record_key(&mut self) -> Fast<RecordKey> {
        self.eat(b'"')?;
        let key = match known_record_key(self.b.get(self.at..).unwrap_or_default()) {
            Some((key, len)) => {
                self.at += len;
                key
            }
            None => {
                self.at -= 1;
                RecordKey::of(self.string()?.as_str())
            }
        };
        self.eat(b':')?;
        Ok(key)
    }

    /// One record object of string values, as `RecordFields::read` reads
    /// it.
    fn record(&mut self, budget: &Budget, r: &mut RecordFields) -> Fast<()> {
        if !self.open(b'{', b'}')? {
            return Ok(());
        }
        loop {
            let key = self.record_key()?;
            if let RecordKey::Other(name) = key {
                budget.unknown_field()?;
                let raw = self.raw_string()?;
                let raw = RawJson::from_text_unchecked(self.ctx.share(raw));
                if r.extra.insert(name, raw).is_some() {
                    return Err(GiveUp);
                }
            } else {
                self.record_value(key, r)?;
            }
            if !self.more(b'}')? {
                return Ok(());
            }
        }
    }

    /// The string value of a known record key, into its slot of `r`.
    fn record_value(&mut self, key: RecordKey, r: &mut RecordFields) -> Fast<()> {
        let value = self.string()?;
        match key {
            RecordKey::Created => {
                let created = parse_created(value.as_str())?;
                set_once::<_, DeError>(&mut r.created, Some(created), "created")?;
            }
            RecordKey::SourceIp => {
                let ip = parse_ip(value.as_str())?;
                set_once::<_, DeError>(&mut r.source_ip, Some(ip), "sourceIp")?;
            }
            RecordKey::SenderIp => {
                let ip = parse_ip(value.as_str())?;
                set_once::<_, DeError>(&mut r.sender_ip, Some(ip), "senderIp")?;
            }
            text => {
                let (slot, name) = r.text_slot(&text).ok_or(GiveUp)?;
                set_once::<_, DeError>(slot, Some(value.into_text(self.ctx)), name)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bodies the fast path takes itself, each giving what the general
    /// path gives.
    #[test]
    fn escapes_white_space_old_names_and_unknown_strings_stay_on_the_fast_path() {
        let bodies = [
            r#"{"event_type":"deliveries","server_composition":"pro","event":{"deliveries":[]}}"#,
            "{ \"event\" :\r\n{\t\"bounces\" : [ { \"created\" : \"2023-01-25 14:03:09\" , \"status\":\"2\" } ] } , \"event_type\":\"bounces\", \"server_composition\":\"p\"}\n",
            r#"{"event_type":"deliveries","server_composition":"pro","x":"kept","event":{"deliveries":[
              {"created":"2023-01-25 14:03:09","status":"queued","envelopeFrom":"a@b","envelopeTo":"c@d",
               "messageId":"\u003C1@x\u003E","subject":"\ud83d\ude00 \"hi\" \u0000\/","sourceIp":"192.0.2.1",
               "senderIp":"","custom":"\n"}],
              "bounces":[{"created":"2023-01-25 14:03:09","status":"2","sourceIp":"2001:db8::1"}]}}"#,
            r#"{"cre\u0061ted":"x","event_type":"bounces","server_composition":"p","event":{"bounces":[{"cre\u0061ted":"2023-01-25 14:03:09","status":"5"}]}}"#,
        ];
        for body in bodies {
            let text = Text::from(body);
            let budget = Budget::new(Default::default());
            let fast = fields(&text, &budget).map(|f| f.into_webhook(None));
            let Ok(Ok(fast)) = fast else {
                panic!("the fast path gave up on {body}");
            };
            let general =
                without(|| crate::Webhook::parse("application/json", bytes::Bytes::from(body)))
                    .unwrap();
            assert_eq!(fast, general, "{body}");
        }
    }

    /// Bodies it leaves to the general path.
    #[test]
    fn numbers_nulls_nesting_blocks_inbound_and_errors_are_left_to_the_general_path() {
        for body in [
            r#"{"event":{"deliveries":[{"created":"2023-01-25 14:03:09","status":1}]}}"#,
            r#"{"event":{"deliveries":[{"created":null}]}}"#,
            r#"{"event":{"deliveries":[{"x":{"a":1}}]}}"#,
            r#"{"event":{"blocks":[{"email":"a@b"}]}}"#,
            r#"{"headers":[],"envelope-to":"a@b"}"#,
            r#"{"event":{"deliveries":[{"status":"a","status":"b"}]}}"#,
            r#"{"event":{"deliveries":[]},}"#,
            r#"{"event":{"deliveries":[]}} x"#,
            "{\"event\":{\"deliveries\":[{\"to\":\"a\u{1}b\"}]}}",
            r#"{"event":{"deliveries":[{"to":"\ud800"}]}}"#,
            r#"{"event":{"deliveries":[{"to":"\x"}]}}"#,
            "{\u{a0}\"event\":{}}",
        ] {
            let text = Text::from(body);
            let budget = Budget::new(Default::default());
            assert!(fields(&text, &budget).is_err(), "the fast path took {body}");
        }
    }

    /// The byte-level key match agrees with the general path's names.
    #[test]
    fn known_record_keys_agree_with_record_key_of() {
        let names = [
            "created",
            "status",
            "returnPath",
            "envelopeFrom",
            "from",
            "to",
            "envelopeTo",
            "messageId",
            "reason",
            "subject",
            "apiData",
            "sourceIp",
            "senderIp",
        ];
        for name in names {
            let quoted = format!("{name}\":\"x\"");
            let (key, len) = known_record_key(quoted.as_bytes()).expect(name);
            assert_eq!(key, RecordKey::of(name), "{name}");
            assert_ne!(key, RecordKey::Other(name.to_owned()), "{name}");
            assert_eq!(len, name.len() + 1, "{name}");
        }
        for other in [
            "create\"",
            "createdx\"",
            "Created\"",
            "s\"",
            "st",
            "",
            "envelope",
            "envelopeTox\"",
            "senderip\"",
            "to",
            "r\"",
            "cre\\u0061ted\"",
            "fromage\"",
        ] {
            assert!(known_record_key(other.as_bytes()).is_none(), "{other}");
        }
    }
}

#[cfg(test)]
mod special_tests {
    use super::special;

    /// The block search finds what a byte loop finds, at every
    /// offset and alignment.
    #[test]
    fn special_agrees_with_a_byte_loop() {
        let naive = |b: &[u8], at: usize| {
            b[at..]
                .iter()
                .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
                .map(|i| at + i)
        };
        let mut inputs: Vec<Vec<u8>> = Vec::new();
        for special in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
            for len in (0..24).chain([31, 32, 33, 40, 64, 65, 100]) {
                for pos in 0..=len {
                    let mut v: Vec<u8> = (0..len).map(|i| b"ab\xc3\xa9z\x7f\xff "[i % 8]).collect();
                    if pos < len {
                        v[pos] = special;
                    }
                    inputs.push(v);
                }
            }
        }
        for v in &inputs {
            for at in 0..=v.len() {
                assert_eq!(special(v, at), naive(v, at), "{v:?} from {at}");
            }
        }
    }
}
