//! An allowlist read from a file, and read again when the file changes or
//! when asked.

use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tracing::Dispatch;

use super::set::{Allowlist, IpSet, IpSetParseError, parse_net_strict};
use crate::text::printable;

/// An [`Allowlist`] kept in step with a file.
///
/// [`open`](AllowlistFile::open) reads the file; hand
/// [`allowlist`](AllowlistFile::allowlist) to the layer
/// ([`WebhookLayerBuilder::shared_allowlist`](crate::layer::WebhookLayerBuilder::shared_allowlist));
/// then either let [`watch`](AllowlistFile::watch) read the file again when
/// it changes, or call [`reload`](AllowlistFile::reload) yourself (on
/// `SIGHUP`, say), or both. Every request is checked against the list of
/// the last good read: a file that cannot be read, holds something that
/// is not a network, or holds no network at all is reported (returned,
/// and logged at `error` by `reload` and `watch`) and leaves the list in
/// force as it was. An empty file is never taken to mean "refuse everyone".
///
/// # The file
///
/// Networks as CIDRs (`203.0.113.0/24`, `2001:db8::/32`) or single
/// addresses (`198.51.100.7`, taken as a /32 or /128), separated by commas,
/// spaces or newlines. `#` starts a comment that runs to the end of the
/// line; blank lines are ignored. The file is read as UTF-8 (a byte-order
/// mark is skipped) and may be at most [`MAX_SIZE`](AllowlistFile::MAX_SIZE)
/// bytes. Networks are merged as in [`IpSet`], so the order and any overlap
/// do not matter. A CIDR with bits set after its prefix (`10.0.0.1/8`) is
/// refused rather than widened to its network: it is a typo, or a line cut
/// while the file was written (`203.0.113.0/2`, a quarter of IPv4, from
/// `203.0.113.0/24`).
///
/// ```text
/// # CMC's senders, from the refusal log (client=...) and CMC's support.
/// 203.0.113.0/24
/// 198.51.100.7, 198.51.100.8   # two single addresses
/// 2001:db8:cafe::/48
/// ```
///
/// A line that holds something else is refused with its number:
/// `the allowlist file /etc/cmc/allow.txt, line 3: `198.51.100.7.8` is not
/// an IP network: ...`.
///
/// # Sharing with the layer
///
/// Give the layer this list with
/// [`shared_allowlist`](crate::layer::WebhookLayerBuilder::shared_allowlist).
/// A reload puts exactly the file's networks in force; networks given to
/// the builder with `allow` stay allowed beside them (the layer never
/// writes them into the shared list), while a [`Allowlist::replace`]
/// through another clone lasts until the next reload.
///
/// ```
/// use cmc_webhook_core::allowlist::AllowlistFile;
/// use cmc_webhook_core::WebhookLayer;
///
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("allow.txt");
/// std::fs::write(&path, "# CMC\n203.0.113.0/24\n198.51.100.7, 2001:db8::/32\n")?;
/// let file = AllowlistFile::open(&path)?;
/// let layer = WebhookLayer::builder()
///     .shared_allowlist(file.allowlist())
///     .api_key("key")
///     .build()?;
/// assert!(layer.allowlist().contains("203.0.113.9".parse()?));
///
/// // The operator adds a network; the next reload puts it in force.
/// std::fs::write(&path, "203.0.113.0/24\n198.51.100.7, 2001:db8::/32\n192.0.2.0/24\n")?;
/// file.reload()?;
/// assert!(layer.allowlist().contains("192.0.2.1".parse()?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct AllowlistFile {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    allowlist: Allowlist,
    /// The file's metadata at the last read, good or bad (`None` when it
    /// could not be looked at); held while a read is under way, so that
    /// reads never overlap and a slower, older read cannot put its list
    /// in force after a newer one.
    read: Mutex<Option<Stamp>>,
}

impl AllowlistFile {
    /// The largest file read, 1 MiB: an allowlist holds a few networks, so
    /// a larger file is taken for a mistake (a wrong path) and refused.
    pub const MAX_SIZE: u64 = 1024 * 1024;

    /// The shortest interval [`watch`](AllowlistFile::watch) checks at, 1 ms.
    pub const MIN_INTERVAL: Duration = Duration::from_millis(1);

    /// Reads the allowlist in `path` (format in the [type's
    /// documentation](AllowlistFile)) and logs its networks at `info`.
    ///
    /// Errors: the file cannot be read or is larger than
    /// [`MAX_SIZE`](AllowlistFile::MAX_SIZE) ([`AllowlistFileError::Read`],
    /// [`AllowlistFileError::TooLarge`]), an item is not a network
    /// ([`AllowlistFileError::Invalid`], with the line and the item), or
    /// the file holds no network ([`AllowlistFileError::Empty`]).
    ///
    /// ```
    /// use cmc_webhook_core::allowlist::{AllowlistFile, AllowlistFileError};
    ///
    /// # let dir = tempfile::tempdir()?;
    /// # let path = dir.path().join("allow.txt");
    /// std::fs::write(&path, "203.0.113.0/24  # CMC\n")?;
    /// let file = AllowlistFile::open(&path)?;
    /// assert!(file.allowlist().contains("203.0.113.1".parse()?));
    ///
    /// std::fs::write(&path, "203.0.113.0/24\n203.0.113.300\n")?;
    /// match AllowlistFile::open(&path) {
    ///     Err(AllowlistFileError::Invalid { line, item, .. }) => {
    ///         assert_eq!((line, item.as_str()), (2, "203.0.113.300"));
    ///     }
    ///     other => panic!("{other:?}"),
    /// }
    ///
    /// std::fs::write(&path, "# nothing yet\n")?;
    /// assert!(matches!(AllowlistFile::open(&path), Err(AllowlistFileError::Empty { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(path: impl Into<PathBuf>) -> Result<AllowlistFile, AllowlistFileError> {
        let path = path.into();
        let (stamp, read) = read(&path);
        let set = read?;
        tracing::info!(
            path = %path.display(),
            allow = %set.sample(),
            "allowlist read from file: {}",
            networks(&set)
        );
        Ok(AllowlistFile {
            inner: Arc::new(Inner {
                path,
                allowlist: Allowlist::new(set),
                read: Mutex::new(stamp),
            }),
        })
    }

    /// The list in force, shared: every clone (and every layer given one)
    /// sees what a reload puts in force.
    ///
    /// ```
    /// use cmc_webhook_core::allowlist::AllowlistFile;
    ///
    /// # let dir = tempfile::tempdir()?;
    /// # let path = dir.path().join("allow.txt");
    /// std::fs::write(&path, "203.0.113.0/24")?;
    /// let file = AllowlistFile::open(&path)?;
    /// let list = file.allowlist();
    /// std::fs::write(&path, "198.51.100.0/24")?;
    /// file.reload()?;
    /// assert!(list.contains("198.51.100.1".parse()?));
    /// assert!(!list.contains("203.0.113.1".parse()?));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn allowlist(&self) -> Allowlist {
        self.inner.allowlist.clone()
    }

    /// The file's path, as given to [`open`](AllowlistFile::open) (a
    /// relative path is read relative to the working directory of the
    /// moment).
    ///
    /// ```
    /// use cmc_webhook_core::allowlist::AllowlistFile;
    ///
    /// # let dir = tempfile::tempdir()?;
    /// # let path = dir.path().join("allow.txt");
    /// std::fs::write(&path, "203.0.113.0/24")?;
    /// assert_eq!(AllowlistFile::open(&path)?.path(), path);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Reads the file again and puts its networks in force.
    ///
    /// On a change, logs at `info` the networks added and removed (as CIDR
    /// lists) and, at `warn`, a new list that allows a whole address
    /// family; the same networks again log only at `debug`. On an error
    /// (the same as [`open`](AllowlistFile::open)'s), the list in force
    /// stays, and the error is logged at `error` with the path, the reason
    /// and how many networks are kept, as well as returned. Reads never
    /// overlap: a call waits for one under way (the file is read on the
    /// calling thread; from async code, wrap the call in
    /// `tokio::task::spawn_blocking` if the file may sit on a slow disk).
    ///
    /// ```
    /// use cmc_webhook_core::allowlist::AllowlistFile;
    ///
    /// # let dir = tempfile::tempdir()?;
    /// # let path = dir.path().join("allow.txt");
    /// std::fs::write(&path, "203.0.113.0/24, 198.51.100.7")?;
    /// let file = AllowlistFile::open(&path)?;
    ///
    /// std::fs::write(&path, "203.0.113.0/24, 192.0.2.0/24")?;
    /// let reload = file.reload()?;
    /// assert!(reload.changed());
    /// assert_eq!(reload.added.to_string(), "192.0.2.0/24");
    /// assert_eq!(reload.removed.to_string(), "198.51.100.7/32");
    /// assert!(!file.reload()?.changed());
    ///
    /// // A typo is refused and the list in force stays.
    /// std::fs::write(&path, "203.0.113.0/24, 192.0.2.0/42")?;
    /// assert!(file.reload().is_err());
    /// assert!(file.allowlist().contains("192.0.2.1".parse()?));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reload(&self) -> Result<Reload, AllowlistFileError> {
        let path = self.path();
        let mut last = self
            .inner
            .read
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (stamp, read) = read(path);
        *last = stamp;
        let set = match read {
            Ok(set) => Arc::new(set),
            Err(e) => {
                self.log_kept(&e);
                return Err(e);
            }
        };
        let before = self.inner.allowlist.get();
        let reload = Reload {
            added: set.difference(&before),
            removed: before.difference(&set),
            set,
        };
        if reload.changed() {
            self.inner.allowlist.store(reload.set.clone());
            tracing::info!(
                path = %path.display(),
                added = %cidrs(&reload.added),
                removed = %cidrs(&reload.removed),
                "allowlist file read again: {} in force",
                networks(&reload.set)
            );
        } else {
            tracing::debug!(
                path = %path.display(),
                "allowlist file read again, unchanged: {}",
                networks(&reload.set)
            );
        }
        Ok(reload)
    }

    /// Checks the file every `every` (at least
    /// [`MIN_INTERVAL`](AllowlistFile::MIN_INTERVAL)) on a task of the
    /// current Tokio runtime, and reloads it when it changed, until the
    /// handle is dropped or [`stop`](WatchHandle::stop)ped. Keep the
    /// handle for as long as the file should be watched;
    /// [`WatchHandle::file`] gives the file back, for a `reload` on
    /// `SIGHUP` (a clone of the `AllowlistFile` does as well).
    ///
    /// A change is any change of the file's size, modification time or
    /// identity (device, inode and status-change time on Unix; creation
    /// time elsewhere), so a file replaced by a rename (an editor's save,
    /// a Kubernetes ConfigMap's update of its symbolic link) is seen like
    /// one written in place. A symbolic link is followed at each check.
    ///
    /// Half-written files: a change is read only once the metadata has
    /// stayed the same for two checks in a row, so a file still being
    /// written (its size or time moving) is left alone until the writer is
    /// done; a change is therefore taken between one and two intervals
    /// after it settles. A writer that pauses for longer than `every` in
    /// the middle of a file can still be read half-way; the list then
    /// follows the complete file at the next check after it. Writing a
    /// temporary file and renaming it over the list avoids the question.
    /// A rewrite that keeps the size within the file system's time
    /// granularity is not seen; [`reload`](AllowlistFile::reload) reads
    /// whatever is there.
    ///
    /// Errors are logged at `error` once per version of the file (a bad
    /// file is not reported again at every check), and the list in force
    /// stays. A file that disappears keeps the list and is reported once,
    /// until it can be looked at again (logged at `info`), when it is read
    /// as a change. The checks and reads run on Tokio's blocking threads,
    /// logging to the `tracing` subscriber that was current when `watch`
    /// was called. Stopping does not interrupt a read already under way.
    ///
    /// Needs a Tokio runtime with its timer enabled (as `#[tokio::main]`
    /// and `Runtime::new` build): without a runtime, the error is
    /// [`AllowlistFileError::NoRuntime`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use cmc_webhook_core::allowlist::AllowlistFile;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let path = dir.path().join("allow.txt");
    /// std::fs::write(&path, "203.0.113.0/24")?;
    /// let file = AllowlistFile::open(&path)?;
    /// let list = file.allowlist(); // for the layer
    /// let watch = file.watch(Duration::from_millis(20))?;
    ///
    /// let next = dir.path().join("allow.txt.new");
    /// std::fs::write(&next, "203.0.113.0/24\n192.0.2.0/24\n")?;
    /// std::fs::rename(&next, &path)?;
    /// while !list.contains("192.0.2.1".parse()?) {
    ///     tokio::time::sleep(Duration::from_millis(10)).await;
    /// }
    ///
    /// watch.file().reload()?; // what a SIGHUP handler calls
    /// watch.stop();
    /// # Ok(())
    /// # }
    /// ```
    pub fn watch(self, every: Duration) -> Result<WatchHandle, AllowlistFileError> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| AllowlistFileError::NoRuntime)?;
        let every = every.max(AllowlistFile::MIN_INTERVAL);
        let dispatch = tracing::dispatcher::get_default(Dispatch::clone);
        let file = self.clone();
        let task = runtime.spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let mut watching = Watching::default();
            loop {
                ticks.tick().await;
                let (file, dispatch) = (file.clone(), dispatch.clone());
                let checked = tokio::task::spawn_blocking(move || {
                    tracing::dispatcher::with_default(&dispatch, || file.check(&mut watching));
                    watching
                })
                .await;
                match checked {
                    Ok(next) => watching = next,
                    // The runtime is shutting down.
                    Err(_) => break,
                }
            }
        });
        Ok(WatchHandle {
            file: self,
            every,
            task,
        })
    }

    /// One check of the watch: reads the file once its metadata has
    /// changed since the last read and then stayed the same for a check.
    fn check(&self, watching: &mut Watching) {
        let path = self.path();
        let now = match fs::metadata(path) {
            Ok(meta) => Stamp::of(&meta),
            Err(source) => {
                watching.pending = None;
                if !watching.unreadable {
                    watching.unreadable = true;
                    self.log_kept(&AllowlistFileError::Read {
                        path: path.to_owned(),
                        source,
                    });
                }
                return;
            }
        };
        if std::mem::take(&mut watching.unreadable) {
            tracing::info!(path = %path.display(), "the allowlist file is there again");
        }
        let last = *self
            .inner
            .read
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last == Some(now) {
            watching.pending = None;
        } else if watching.pending == Some(now) {
            watching.pending = None;
            // Logged by `reload`, success or failure.
            let _ = self.reload();
        } else {
            watching.pending = Some(now);
        }
    }

    /// Logs a failed read with the number of networks kept in force.
    fn log_kept(&self, error: &AllowlistFileError) {
        let kept = self.inner.allowlist.get();
        tracing::error!(
            path = %self.path().display(),
            error = %error,
            "allowlist file not reloaded: keeping the {} in force",
            networks(&kept)
        );
    }
}

impl fmt::Debug for AllowlistFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AllowlistFile")
            .field("path", &self.inner.path)
            .field("allowlist", &self.inner.allowlist)
            .finish()
    }
}

/// What a [`reload`](AllowlistFile::reload) found: the list now in force,
/// and how it differs from the list before.
///
/// ```
/// use cmc_webhook_core::allowlist::AllowlistFile;
///
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("allow.txt");
/// std::fs::write(&path, "203.0.113.0/24")?;
/// let file = AllowlistFile::open(&path)?;
/// std::fs::write(&path, "203.0.113.0/25")?;
/// let reload = file.reload()?;
/// assert!(reload.changed());
/// assert_eq!(reload.set.to_string(), "203.0.113.0/25");
/// assert!(reload.added.is_empty());
/// assert_eq!(reload.removed.to_string(), "203.0.113.128/25");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reload {
    /// The list in force after the reload: the file's networks.
    pub set: Arc<IpSet>,
    /// The addresses allowed now and not before (empty when unchanged).
    pub added: IpSet,
    /// The addresses allowed before and not now (empty when unchanged).
    pub removed: IpSet,
}

impl Reload {
    /// Whether the list in force changed.
    ///
    /// ```
    /// use cmc_webhook_core::allowlist::AllowlistFile;
    ///
    /// # let dir = tempfile::tempdir()?;
    /// # let path = dir.path().join("allow.txt");
    /// std::fs::write(&path, "203.0.113.0/24")?;
    /// let file = AllowlistFile::open(&path)?;
    /// // Other words for the same addresses are no change.
    /// std::fs::write(&path, "203.0.113.0/25\n203.0.113.128/25 # split\n")?;
    /// assert!(!file.reload()?.changed());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn changed(&self) -> bool {
        !self.added.is_empty() || !self.removed.is_empty()
    }
}

/// The task of [`AllowlistFile::watch`]; dropping the handle stops it.
///
/// ```
/// use std::time::Duration;
/// use cmc_webhook_core::allowlist::AllowlistFile;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("allow.txt");
/// # std::fs::write(&path, "203.0.113.0/24")?;
/// let watch = AllowlistFile::open(&path)?.watch(Duration::from_secs(2))?;
/// println!("{watch:?}");
/// drop(watch); // stops watching; the list stays as it is
/// # Ok(())
/// # }
/// ```
pub struct WatchHandle {
    file: AllowlistFile,
    every: Duration,
    task: JoinHandle<()>,
}

impl WatchHandle {
    /// The file watched, for its [`allowlist`](AllowlistFile::allowlist)
    /// or a [`reload`](AllowlistFile::reload) when asked (on `SIGHUP`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use cmc_webhook_core::allowlist::AllowlistFile;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let path = dir.path().join("allow.txt");
    /// std::fs::write(&path, "203.0.113.0/24")?;
    /// let watch = AllowlistFile::open(&path)?.watch(Duration::from_secs(60))?;
    /// std::fs::write(&path, "192.0.2.0/24")?;
    /// watch.file().reload()?; // without waiting for the next check
    /// assert!(watch.file().allowlist().contains("192.0.2.1".parse()?));
    /// # Ok(())
    /// # }
    /// ```
    pub fn file(&self) -> &AllowlistFile {
        &self.file
    }

    /// Stops watching (as dropping the handle does); the list in force
    /// stays, and [`reload`](AllowlistFile::reload) still works on the
    /// file's clones.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cmc_webhook_core::allowlist::AllowlistFile;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let path = dir.path().join("allow.txt");
    /// std::fs::write(&path, "203.0.113.0/24")?;
    /// let file = AllowlistFile::open(&path)?;
    /// let watch = file.clone().watch(Duration::from_secs(1))?;
    /// watch.stop();
    /// assert!(file.allowlist().contains("203.0.113.1".parse()?));
    /// # Ok(())
    /// # }
    /// ```
    pub fn stop(self) {
        // Dropping aborts the task.
    }
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl fmt::Debug for WatchHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchHandle")
            .field("path", &self.file.inner.path)
            .field("every", &self.every)
            .field("running", &!self.task.is_finished())
            .finish()
    }
}

/// Why an allowlist file was not read (or not watched). A failed reload
/// leaves the list in force as it was.
///
/// ```
/// use cmc_webhook_core::allowlist::{AllowlistFile, AllowlistFileError};
///
/// # let dir = tempfile::tempdir()?;
/// let e = AllowlistFile::open(dir.path().join("missing.txt")).unwrap_err();
/// assert!(matches!(e, AllowlistFileError::Read { .. }));
/// assert!(e.to_string().starts_with("cannot read the allowlist file "));
/// assert!(std::error::Error::source(&e).is_some()); // the io::Error
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum AllowlistFileError {
    /// The file cannot be read: it does not exist, this process may not
    /// read it, or it is not a regular file.
    #[non_exhaustive]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The file is larger than [`AllowlistFile::MAX_SIZE`].
    #[non_exhaustive]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size in bytes (or as much as was read, when it grew while
        /// being read).
        size: u64,
    },
    /// An item of the file is not a network.
    #[non_exhaustive]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The line it is on, from 1.
        line: usize,
        /// The item, with control and invisible characters escaped and cut
        /// after 64 characters.
        item: String,
        /// The same, as the error parsing a list would give.
        source: IpSetParseError,
    },
    /// The file holds no network, only blanks or comments: taken as a
    /// mistake rather than as "refuse every request".
    #[non_exhaustive]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// [`AllowlistFile::watch`] was called outside a Tokio runtime.
    NoRuntime,
}

impl AllowlistFileError {
    /// The file the error is about (`None` for
    /// [`NoRuntime`](AllowlistFileError::NoRuntime)).
    ///
    /// ```
    /// use cmc_webhook_core::allowlist::AllowlistFile;
    ///
    /// # let dir = tempfile::tempdir()?;
    /// # let path = dir.path().join("allow.txt");
    /// std::fs::write(&path, "\n# to do\n")?;
    /// assert_eq!(AllowlistFile::open(&path).unwrap_err().path(), Some(path.as_path()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn path(&self) -> Option<&Path> {
        match self {
            AllowlistFileError::Read { path, .. }
            | AllowlistFileError::TooLarge { path, .. }
            | AllowlistFileError::Invalid { path, .. }
            | AllowlistFileError::Empty { path } => Some(path),
            AllowlistFileError::NoRuntime => None,
        }
    }
}

impl fmt::Display for AllowlistFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllowlistFileError::Read { path, source } => write!(
                f,
                "cannot read the allowlist file {}: {source}: check the path, and that the file \
                 exists and this process may read it",
                path.display()
            ),
            AllowlistFileError::TooLarge { path, size } => write!(
                f,
                "the allowlist file {} holds {size} bytes, more than the {} an allowlist may \
                 hold: check that the path names the allowlist",
                path.display(),
                AllowlistFile::MAX_SIZE
            ),
            AllowlistFileError::Invalid {
                path,
                line,
                item,
                source,
            } => match source.network() {
                Some(network) => write!(
                    f,
                    "the allowlist file {}, line {line}: `{item}` has bits set after its prefix \
                     (a line cut off while the file was written, or a typo): write the network, \
                     {network}",
                    path.display()
                ),
                None => write!(
                    f,
                    "the allowlist file {}, line {line}: `{item}` is not an IP network: write CIDRs \
                     like 203.0.113.0/24 or 2001:db8::/32, or single addresses, separated by commas, \
                     spaces or newlines (`#` starts a comment)",
                    path.display()
                ),
            },
            AllowlistFileError::Empty { path } => write!(
                f,
                "the allowlist file {} holds no network, which would refuse every request: list \
                 the networks CMC posts from, one per line",
                path.display()
            ),
            AllowlistFileError::NoRuntime => f.write_str(
                "AllowlistFile::watch needs a Tokio runtime: call it from async code run by the \
                 runtime (or inside Runtime::enter)",
            ),
        }
    }
}

impl std::error::Error for AllowlistFileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AllowlistFileError::Read { source, .. } => Some(source),
            AllowlistFileError::Invalid { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// What a watch remembers between two checks.
#[derive(Debug, Default, Clone, Copy)]
struct Watching {
    /// Metadata that differs from the last read's, seen at the last check.
    pending: Option<Stamp>,
    /// Whether the last check could not look at the file (and said so).
    unreadable: bool,
}

/// What a watch compares to tell that a file changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    #[cfg(unix)]
    identity: (u64, u64, i64, i64),
    #[cfg(not(unix))]
    created: Option<SystemTime>,
}

impl Stamp {
    fn of(meta: &fs::Metadata) -> Stamp {
        #[cfg(unix)]
        use std::os::unix::fs::MetadataExt;
        Stamp {
            len: meta.len(),
            modified: meta.modified().ok(),
            #[cfg(unix)]
            identity: (meta.dev(), meta.ino(), meta.ctime(), meta.ctime_nsec()),
            #[cfg(not(unix))]
            created: meta.created().ok(),
        }
    }
}

/// Reads and parses the file, with the metadata of what was read (`None`
/// when even that could not be had).
fn read(path: &Path) -> (Option<Stamp>, Result<IpSet, AllowlistFileError>) {
    let failed = |source: io::Error| AllowlistFileError::Read {
        path: path.to_owned(),
        source,
    };
    let not_a_file = || io::Error::new(io::ErrorKind::InvalidInput, "not a regular file");
    // Looked at before opening: opening a FIFO would wait for a writer.
    match fs::metadata(path) {
        Ok(meta) if !meta.is_file() => return (Some(Stamp::of(&meta)), Err(failed(not_a_file()))),
        Ok(_) => {}
        Err(e) => return (None, Err(failed(e))),
    }
    // The path may have been replaced by a FIFO since: opened without
    // waiting (O_NONBLOCK, which changes nothing for a regular file), and
    // what was opened is checked again.
    let mut options = fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let file = match options.open(path) {
        Ok(file) => file,
        Err(e) => return (None, Err(failed(e))),
    };
    let meta = match file.metadata() {
        Ok(meta) if !meta.is_file() => return (Some(Stamp::of(&meta)), Err(failed(not_a_file()))),
        Ok(meta) => meta,
        Err(e) => return (None, Err(failed(e))),
    };
    let stamp = Some(Stamp::of(&meta));
    let too_large = |size: u64| AllowlistFileError::TooLarge {
        path: path.to_owned(),
        size,
    };
    if meta.len() > AllowlistFile::MAX_SIZE {
        return (stamp, Err(too_large(meta.len())));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    if let Err(e) = file
        .take(AllowlistFile::MAX_SIZE + 1)
        .read_to_end(&mut bytes)
    {
        return (stamp, Err(failed(e)));
    }
    let size = bytes.len() as u64;
    if size > AllowlistFile::MAX_SIZE {
        return (stamp, Err(too_large(size)));
    }
    (stamp, parse(path, &bytes))
}

/// The networks of a file's contents.
fn parse(path: &Path, bytes: &[u8]) -> Result<IpSet, AllowlistFileError> {
    let text = String::from_utf8_lossy(bytes);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut nets = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line_no = n + 1;
        let content = line.find('#').map_or(line, |at| &line[..at]);
        let items = content
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|item| !item.is_empty());
        for item in items {
            match parse_net_strict(item) {
                Ok(net) => nets.push(net),
                Err(source) => {
                    return Err(AllowlistFileError::Invalid {
                        path: path.to_owned(),
                        line: line_no,
                        source,
                        item: printable(item, 64),
                    });
                }
            }
        }
    }
    if nets.is_empty() {
        return Err(AllowlistFileError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(IpSet::from_nets(nets))
}

/// "1 network", "3 networks": how many CIDRs the set is written as.
fn networks(set: &IpSet) -> String {
    match set.nets().len() {
        1 => "1 network".to_owned(),
        n => format!("{n} networks"),
    }
}

/// A set as a CIDR list for a log line, "none" when empty; a large set
/// is shown by its first networks and a count, never whole on one line.
fn cidrs(set: &IpSet) -> String {
    if set.is_empty() {
        "none".to_owned()
    } else {
        set.sample().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<IpSet, AllowlistFileError> {
        parse(Path::new("allow.txt"), text.as_bytes())
    }

    #[test]
    fn the_format() {
        let set = parsed(
            "\u{feff}# CMC\r\n\n203.0.113.0/24,198.51.100.7  2001:db8::/32#x\n\t192.0.2.1 , \r\n",
        )
        .unwrap();
        assert_eq!(
            set.to_string(),
            "192.0.2.1/32, 198.51.100.7/32, 203.0.113.0/24, 2001:db8::/32"
        );
        assert!(matches!(
            parsed("# only\n\n  \n# comments\n"),
            Err(AllowlistFileError::Empty { .. })
        ));
        assert!(matches!(parsed(""), Err(AllowlistFileError::Empty { .. })));
        assert!(matches!(
            parsed(",,"),
            Err(AllowlistFileError::Empty { .. })
        ));
    }

    #[test]
    fn bad_items_are_named_with_their_line_and_escaped() {
        let e = parsed("10.0.0.0/8\n\n# x\n10.1.0.0/16, 10.2.0.0/33\n").unwrap_err();
        assert!(
            matches!(&e, AllowlistFileError::Invalid { line: 4, item, .. } if item == "10.2.0.0/33"),
            "{e:?}"
        );
        assert!(
            e.to_string().starts_with(
                "the allowlist file allow.txt, line 4: `10.2.0.0/33` is not an IP network"
            ),
            "{e}"
        );
        let e = parsed("10.0.0.0/8\u{1b}[2J\n").unwrap_err();
        assert!(e.to_string().contains("`10.0.0.0/8\\u{1b}[2J`"), "{e}");
        let e = parsed(&"9".repeat(100_000)).unwrap_err();
        assert!(e.to_string().len() < 400, "{e}");
        let e = parse(Path::new("a"), b"10.0.0.0/8 \xff\xfe").unwrap_err();
        assert!(
            matches!(e, AllowlistFileError::Invalid { line: 1, .. }),
            "{e:?}"
        );
    }

    #[test]
    fn the_types_cross_threads() {
        fn send_sync<T: Send + Sync + 'static>() {}
        send_sync::<AllowlistFile>();
        send_sync::<AllowlistFileError>();
        send_sync::<Reload>();
        send_sync::<WatchHandle>();
    }

    #[test]
    fn counts_read_well() {
        assert_eq!(networks(&"10.0.0.0/8".parse().unwrap()), "1 network");
        assert_eq!(networks(&"10.0.0.0/8, ::1".parse().unwrap()), "2 networks");
        assert_eq!(cidrs(&IpSet::new()), "none");
    }
}
