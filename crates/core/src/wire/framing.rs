//! A guard between the body stream and `multer`: it follows the multipart
//! framing and holds back the preamble and each part's header block until
//! they are complete, so that `multer` searches each of them once.
//!
//! `multer` looks for the end of a part's headers (and for the first
//! boundary) by searching its whole buffer again every time a chunk
//! arrives. A header block sent in small pieces therefore costs the square
//! of its size: 8 MB in 4 KB pieces took 23 times the CPU of a normal
//! body. `multer::Constraints` caps fields and the whole stream, but not a
//! header block. Here the header block is capped
//! ([`Limits::max_part_header_size`](crate::Limits::max_part_header_size),
//! 413 beyond it) and handed over whole; part data passes through as it
//! comes, since `multer` reads it in linear time. Every search here resumes
//! where the last one stopped, so the guard itself is linear.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use memchr::memmem;

use crate::work;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The preamble or a part's header block is longer than the cap.
#[derive(Debug)]
pub(crate) struct HeaderTooLarge(pub(crate) String);

impl fmt::Display for HeaderTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HeaderTooLarge {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before the first `--boundary`.
    Preamble,
    /// After a `--boundary`: the rest of its line and the part's headers,
    /// up to the blank line (or `--` for the last boundary).
    Headers,
    /// A part's data, up to the next `CRLF--boundary`.
    Data,
    /// After the last boundary.
    Done,
}

/// The framing state of one multipart body.
pub(crate) struct Framing {
    /// `--boundary`, which ends the preamble.
    dash_boundary: Vec<u8>,
    /// `CRLF--boundary`, which ends a part's data.
    delimiter: Vec<u8>,
    phase: Phase,
    /// The bytes of the preamble or header block held back.
    held: BytesMut,
    /// How much of the held bytes was searched already.
    scanned: usize,
    /// In a header block: where the boundary's own line ends.
    line_end: Option<usize>,
    /// In part data: the last bytes passed on, for a delimiter that is
    /// split across chunks.
    tail: Vec<u8>,
    cap: usize,
}

/// The byte that carries control bytes of a part's header block past
/// `multer`.
///
/// Mailers write file names raw in their charset, and raw ISO-2022-JP
/// switches with ESC sequences; `multer`'s header parser (httparse)
/// refuses control bytes in a header value, so the whole mail would be
/// refused over one file name. A header block that holds such a byte (or
/// this one) is handed over with each written as two bytes: 0xFF, then
/// the control byte plus 0x40 (ESC becomes `FF 5B`), and 0xFF itself as
/// `FF FF`. 0xFF is an `obs-text` byte, which httparse accepts; the
/// file-name reader undoes the carrying exactly ([`uncarry`]).
pub(crate) const CARRIER: u8 = 0xFF;

/// Whether `b` must be carried: a control byte other than the tab, CR and
/// LF that frame header lines, or the carrier itself.
fn must_carry(b: u8) -> bool {
    matches!(b, 0x00..=0x08 | 0x0b | 0x0c | 0x0e..=0x1f | 0x7f | CARRIER)
}

/// Undoes the carrying of a header value (see [`CARRIER`]); `None` when
/// there is nothing to undo.
pub(crate) fn uncarry(value: &[u8]) -> Option<Vec<u8>> {
    if !value.contains(&CARRIER) {
        return None;
    }
    let mut out = Vec::with_capacity(value.len());
    let mut bytes = value.iter();
    while let Some(&b) = bytes.next() {
        if b == CARRIER {
            match bytes.next() {
                Some(&CARRIER) => out.push(CARRIER),
                Some(&c) => out.push(c.wrapping_sub(0x40) & 0x7f),
                None => out.push(CARRIER),
            }
        } else {
            out.push(b);
        }
    }
    Some(out)
}

impl Framing {
    pub(crate) fn new(boundary: &str, cap: usize) -> Framing {
        let dash_boundary = [b"--", boundary.as_bytes()].concat();
        let delimiter = [b"\r\n", &dash_boundary[..]].concat();
        Framing {
            dash_boundary,
            delimiter,
            phase: Phase::Preamble,
            held: BytesMut::new(),
            scanned: 0,
            line_end: None,
            tail: Vec::new(),
            cap,
        }
    }

    /// A header block as `multer` may see it, with its control bytes
    /// carried (see [`CARRIER`]); `None` when it needs no change.
    fn carried(&self, block: &[u8]) -> Option<Bytes> {
        if !block.iter().any(|&b| must_carry(b)) {
            return None;
        }
        let mut out = Vec::with_capacity(block.len() + 16);
        for &b in block {
            if must_carry(b) {
                out.push(CARRIER);
                out.push(if b == CARRIER { CARRIER } else { b + 0x40 });
            } else {
                out.push(b);
            }
        }
        Some(out.into())
    }

    /// Takes the next chunk of the body; pushes onto `out` what may be
    /// handed to `multer` now: the block held so far once it is complete,
    /// then the rest of the chunk in one slice (no copy) up to where a new
    /// block starts that must be held back. A chunk that holds whole blocks
    /// (a body read into memory) passes in one piece.
    pub(crate) fn feed(
        &mut self,
        chunk: Bytes,
        out: &mut VecDeque<Bytes>,
    ) -> Result<(), HeaderTooLarge> {
        let mut piece = chunk;
        if !self.held.is_empty() {
            self.held.extend_from_slice(&piece);
            let held = std::mem::take(&mut self.held);
            let found = self.scan(&held);
            self.held = held;
            match found? {
                None => return Ok(()),
                Some(end) => {
                    let was_headers = self.phase != Phase::Headers;
                    let mut block = std::mem::take(&mut self.held).freeze();
                    piece = block.split_off(end);
                    match self.carried(&block).filter(|_| was_headers) {
                        Some(carried) => out.push_back(carried),
                        None => out.push_back(block),
                    }
                }
            }
        }
        // The first byte of `piece` not yet handed on.
        let mut start = 0;
        let mut pos = 0;
        while pos < piece.len() {
            match self.phase {
                Phase::Done => pos = piece.len(),
                Phase::Data => match self.find_delimiter(&piece[pos..], pos == 0) {
                    Some(end) => {
                        pos += end;
                        self.tail.clear();
                        self.enter(Phase::Headers);
                    }
                    None => {
                        self.remember_tail(&piece[pos..]);
                        pos = piece.len();
                    }
                },
                Phase::Preamble | Phase::Headers => {
                    let headers = self.phase == Phase::Headers;
                    match self.scan(&piece[pos..])? {
                        Some(end) => {
                            let carried = self.carried(&piece[pos..pos + end]);
                            if let Some(carried) = carried.filter(|_| headers) {
                                if pos > start {
                                    out.push_back(piece.slice(start..pos));
                                }
                                out.push_back(carried);
                                start = pos + end;
                            }
                            pos += end;
                        }
                        None => {
                            self.held.extend_from_slice(&piece[pos..]);
                            break;
                        }
                    }
                }
            }
        }
        if start == 0 && pos == piece.len() {
            if !piece.is_empty() {
                out.push_back(piece);
            }
        } else if pos > start {
            out.push_back(piece.slice(start..pos));
        }
        Ok(())
    }

    /// At the end of the body: whatever is held, for `multer` to judge.
    pub(crate) fn finish(&mut self, out: &mut VecDeque<Bytes>) {
        if !self.held.is_empty() {
            out.push_back(std::mem::take(&mut self.held).freeze());
        }
    }

    fn enter(&mut self, phase: Phase) {
        self.phase = phase;
        self.scanned = 0;
        self.line_end = None;
    }

    /// Searches the preamble or header block `buf` (everything held so
    /// far) from where the last search stopped. Returns the length of the
    /// block once it is complete, and moves to the next phase.
    fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, HeaderTooLarge> {
        let end = match self.phase {
            Phase::Preamble => {
                let from = self.scanned.saturating_sub(self.dash_boundary.len() - 1);
                work::tick(buf.len() - from);
                memmem::find(&buf[from..], &self.dash_boundary)
                    .map(|i| (from + i + self.dash_boundary.len(), Phase::Headers))
            }
            Phase::Headers => self.scan_headers(buf),
            Phase::Data | Phase::Done => None,
        };
        match end {
            Some((end, next)) if end <= self.cap => {
                self.enter(next);
                Ok(Some(end))
            }
            Some(_) => Err(self.too_large()),
            None if buf.len() > self.cap => Err(self.too_large()),
            None => {
                self.scanned = buf.len();
                Ok(None)
            }
        }
    }

    /// A header block starts right after `--boundary`: `--` ends the body;
    /// otherwise the boundary's line ends with CRLF and the headers with a
    /// blank line after it (where `multer` looks for them).
    fn scan_headers(&mut self, buf: &[u8]) -> Option<(usize, Phase)> {
        if buf.len() < 2 {
            return None;
        }
        if buf.starts_with(b"--") {
            return Some((2, Phase::Done));
        }
        let line_end = match self.line_end {
            Some(at) => at,
            None => {
                let from = self.scanned.saturating_sub(1);
                work::tick(buf.len() - from);
                let at = from + memmem::find(&buf[from..], b"\r\n")? + 2;
                self.line_end = Some(at);
                self.scanned = at;
                at
            }
        };
        let from = self.scanned.saturating_sub(3).max(line_end);
        work::tick(buf.len().saturating_sub(from));
        memmem::find(&buf[from..], b"\r\n\r\n").map(|i| (from + i + 4, Phase::Data))
    }

    /// Where the `CRLF--boundary` that ends the data ends in `piece`,
    /// including one that began in the previous chunk (when `piece` starts
    /// a chunk).
    fn find_delimiter(&self, piece: &[u8], chunk_start: bool) -> Option<usize> {
        let k = self.delimiter.len() - 1;
        if chunk_start && !self.tail.is_empty() {
            let head = &piece[..piece.len().min(k)];
            let joined = [&self.tail[..], head].concat();
            if let Some(i) = memmem::find(&joined, &self.delimiter) {
                return Some(i + self.delimiter.len() - self.tail.len());
            }
        }
        work::tick(piece.len());
        memmem::find(piece, &self.delimiter).map(|i| i + self.delimiter.len())
    }

    fn remember_tail(&mut self, piece: &[u8]) {
        let k = self.delimiter.len() - 1;
        if piece.len() >= k {
            self.tail.clear();
            self.tail.extend_from_slice(&piece[piece.len() - k..]);
        } else {
            self.tail.extend_from_slice(piece);
            let excess = self.tail.len().saturating_sub(k);
            self.tail.drain(..excess);
        }
    }

    fn too_large(&self) -> HeaderTooLarge {
        HeaderTooLarge(match self.phase {
            Phase::Preamble => format!(
                "the multipart body has more than {} bytes before its first boundary (the cap is Limits::max_part_header_size)",
                self.cap
            ),
            _ => format!(
                "a multipart part's header block is longer than {} bytes (the cap is Limits::max_part_header_size)",
                self.cap
            ),
        })
    }
}

/// A body stream passed through a [`Framing`] guard.
pub(crate) struct Guarded<S> {
    inner: S,
    framing: Framing,
    ready: VecDeque<Bytes>,
    ended: bool,
}

impl<S> Guarded<S> {
    pub(crate) fn new(inner: S, framing: Framing) -> Self {
        Guarded {
            inner,
            framing,
            ready: VecDeque::new(),
            ended: false,
        }
    }
}

impl<S, E> Stream for Guarded<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Into<BoxError>,
{
    type Item = Result<Bytes, BoxError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(bytes) = this.ready.pop_front() {
                return Poll::Ready(Some(Ok(bytes)));
            }
            if this.ended {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.inner).poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    if let Err(e) = this.framing.feed(chunk, &mut this.ready) {
                        this.ended = true;
                        this.ready.clear();
                        return Poll::Ready(Some(Err(Box::new(e))));
                    }
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(None) => {
                    this.ended = true;
                    this.framing.finish(&mut this.ready);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `body` in pieces of `size` and returns what multer would see,
    /// and the pieces it would see.
    fn run(body: &[u8], size: usize, cap: usize) -> Result<(Vec<u8>, usize), HeaderTooLarge> {
        let mut framing = Framing::new("b", cap);
        let mut out = VecDeque::new();
        for piece in body.chunks(size) {
            framing.feed(Bytes::copy_from_slice(piece), &mut out)?;
        }
        framing.finish(&mut out);
        let n = out.len();
        Ok((out.into_iter().flat_map(|b| b.to_vec()).collect(), n))
    }

    const BODY: &[u8] = b"preamble\r\n--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nvalue one\r\n--b \r\nContent-Disposition: form-data; name=\"c\"\r\n\r\n\r\n--b--\r\nepilogue";

    #[test]
    fn passes_every_byte_through_in_order_whatever_the_chunking() {
        for size in [1, 2, 3, 5, 7, 64, BODY.len()] {
            let (seen, _) = run(BODY, size, 1024).unwrap();
            assert_eq!(seen, BODY, "pieces of {size}");
        }
    }

    #[test]
    fn header_blocks_are_handed_over_whole() {
        // In one-byte pieces, the preamble and each header block arrive in
        // one piece; data and epilogue bytes pass one by one.
        let (_, pieces) = run(BODY, 1, 1024).unwrap();
        let passed = b"value one\r\n--b".len() + b"\r\n--b".len() + b"\r\nepilogue".len();
        assert_eq!(
            pieces,
            passed + 4,
            "preamble, 2 header blocks, the closing `--`"
        );
    }

    #[test]
    fn control_bytes_in_header_blocks_are_carried_and_restored_exactly() {
        let name = b"\x1b$B\x22(\x1b(B\xff\x01\x7f.txt";
        let body = [
            &b"--b\r\nContent-Disposition: form-data; name=\"a\"; filename=\""[..],
            &name[..],
            b"\"\r\n\r\nx\r\n--b--\r\n",
        ]
        .concat();
        for size in [1, 7, body.len()] {
            let (seen, _) = run(&body, size, 1024).unwrap();
            // What multer sees has no control byte httparse refuses...
            let head_end = seen.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
            assert!(
                !seen[..head_end]
                    .iter()
                    .any(|&b| b == 0x1b || b == 0x01 || b == 0x7f)
            );
            // ... and the value comes back byte for byte.
            let start = seen.windows(10).position(|w| w == b"filename=\"").unwrap() + 10;
            let end = head_end - 1;
            assert_eq!(
                uncarry(&seen[start..end]).unwrap(),
                name,
                "pieces of {size}"
            );
        }
        // A block without such bytes is not touched.
        assert_eq!(uncarry(b"plain"), None);
    }

    #[test]
    fn over_long_header_blocks_and_preambles_are_refused() {
        let long = [&b"--b\r\nX: "[..], &[b'a'; 100], b"\r\n\r\ndata\r\n--b--"].concat();
        assert!(run(&long, 7, 200).is_ok());
        let e = run(&long, 7, 50).unwrap_err();
        assert!(e.0.contains("header block is longer than 50 bytes"), "{e}");
        let e = run(&[&[b'p'; 100][..], b"--b\r\n\r\n"].concat(), 3, 50).unwrap_err();
        assert!(e.0.contains("before its first boundary"), "{e}");
    }

    #[test]
    fn a_header_block_without_an_end_costs_linear_work() {
        work::assert_linear(
            "an endless header block in one-byte pieces",
            20_000,
            4.0,
            |n| [&b"--b\r\nX: "[..], &vec![b'a'; n]].concat(),
            |body| {
                run(body, 1, usize::MAX).unwrap();
            },
        );
    }
}
