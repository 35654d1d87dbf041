//! Reading a file an operator names (a secret, a certificate, a CA file,
//! the configuration): a regular file only, within a size.
//!
//! A named pipe, a device or a directory is refused before anything is
//! read: opening a FIFO for reading waits for a writer, so a pipe given
//! by mistake (or swapped in for a file) would stop the start, or a
//! reload, for good. The path is looked at first; the opening does not
//! wait (`O_NONBLOCK`, which changes nothing for a regular file), and what
//! was opened is checked again, in case the path changed in between.

use std::fmt;
use std::io::{self, Read as _};
use std::path::Path;

/// Why a file could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// Opening or reading failed.
    Io(io::Error),
    /// The path is not a regular file (a pipe, a device, a directory).
    NotRegular,
    /// The file holds more than the limit.
    TooLarge(u64),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Io(e) => e.fmt(f),
            ReadError::NotRegular => f.write_str("not a regular file"),
            ReadError::TooLarge(limit) => write!(f, "larger than {limit} bytes"),
        }
    }
}

impl std::error::Error for ReadError {}

/// The bytes of the regular file at `path`, at most `limit` of them.
///
/// ```
/// use cmc_receiver::read::{read_regular, ReadError};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("secret");
/// std::fs::write(&path, "whsec_...\n")?;
/// assert_eq!(read_regular(&path, 1024)?, b"whsec_...\n");
/// assert!(matches!(read_regular(&path, 4), Err(ReadError::TooLarge(4))));
/// assert!(matches!(read_regular(dir.path(), 1024), Err(ReadError::NotRegular)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn read_regular(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    if !std::fs::metadata(path).map_err(ReadError::Io)?.is_file() {
        return Err(ReadError::NotRegular);
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let file = options.open(path).map_err(ReadError::Io)?;
    if !file.metadata().map_err(ReadError::Io)?.is_file() {
        return Err(ReadError::NotRegular);
    }
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge(limit));
    }
    Ok(bytes)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn a_named_pipe_is_refused_without_waiting_for_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(read_regular(&fifo, 1024).map(|_| ()));
        });
        let result = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("reading a named pipe must not wait");
        assert!(matches!(result, Err(ReadError::NotRegular)), "{result:?}");
        assert!(matches!(
            read_regular(Path::new("/dev/zero"), 1024),
            Err(ReadError::NotRegular)
        ));
    }
}
