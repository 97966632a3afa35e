//! Shared-file master/slave, as KahaDB's `SharedFileLocker` does it: the
//! master holds an exclusive OS lock (`flock`) on `<kahaDB directory>/lock`;
//! every other broker on the same directory waits as a slave — no client
//! connectors, no journal opened — and retries every
//! `lockAcquireSleepInterval`. With `lockKeepAlivePeriod` the master checks
//! that the lock file is still the one it locked (not deleted, replaced or
//! rewritten by someone else) and steps down if not: without that check a
//! deleted lock file lets a second master in and the journal is corrupted.

use crate::broker::{Broker, BrokerSettings};
use crate::role::Role;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("lock file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0} is locked by another broker and failIfLocked is set")]
    Locked(PathBuf),
    #[error(
        "no longer able to keep the exclusive lock on {path} ({why}), so giving up being a master"
    )]
    Lost { path: PathBuf, why: String },
}

/// Why [`wait_as_slave`] did not end with the lock.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("cannot listen on {0} for the status endpoint: {1}")]
    Status(String, #[source] io::Error),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// An exclusive lock on `<dir>/lock`, released when dropped (or when the
/// process dies, which is what lets a slave take over after `kill -9`).
#[derive(Debug)]
pub struct LockFile {
    file: File,
    path: PathBuf,
    dev: u64,
    ino: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl LockFile {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One attempt: `Ok(None)` if another process holds the lock.
    pub fn try_acquire(dir: &Path) -> Result<Option<LockFile>, LockError> {
        let path = dir.join("lock");
        let io_err = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io_err)?;
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Ok(None),
            Err(TryLockError::Error(e)) => return Err(io_err(e)),
        }
        // Like ActiveMQ: stamp the file, so a keep-alive can tell whether
        // anyone else touched it since.
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        file.set_len(0).map_err(io_err)?;
        writeln!(file, "{stamp} pid {}", std::process::id()).map_err(io_err)?;
        file.sync_all().map_err(io_err)?;
        let meta = file.metadata().map_err(io_err)?;
        Ok(Some(LockFile {
            dev: meta.dev(),
            ino: meta.ino(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
            file,
            path,
        }))
    }

    /// Waits as a slave until the lock is ours, retrying every `interval`.
    /// `on_wait` runs once, at the first failed attempt.
    pub async fn acquire(
        dir: &Path,
        interval: Duration,
        fail_if_locked: bool,
        on_wait: impl FnOnce(),
    ) -> Result<LockFile, LockError> {
        let mut on_wait = Some(on_wait);
        loop {
            let dir_owned = dir.to_owned();
            let attempt = tokio::task::spawn_blocking(move || Self::try_acquire(&dir_owned))
                .await
                .expect("lock attempt does not panic")?;
            if let Some(lock) = attempt {
                return Ok(lock);
            }
            if fail_if_locked {
                return Err(LockError::Locked(dir.join("lock")));
            }
            if let Some(f) = on_wait.take() {
                f();
            }
            tokio::time::sleep(interval).await;
        }
    }

    /// The keep-alive check: the lock file at our path must still be the
    /// file we locked, unmodified since we stamped it.
    pub fn check(&self) -> Result<(), LockError> {
        let lost = |why: String| LockError::Lost {
            path: self.path.clone(),
            why,
        };
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(lost("the lock file was deleted".into()))
            }
            Err(e) => return Err(lost(e.to_string())),
        };
        if (meta.dev(), meta.ino()) != (self.dev, self.ino) {
            return Err(lost("the lock file was replaced".into()));
        }
        if (meta.mtime(), meta.mtime_nsec()) != (self.mtime, self.mtime_nsec) {
            return Err(lost("the lock file was modified by someone else".into()));
        }
        // Our descriptor still refers to a locked, linked file.
        let _ = &self.file;
        Ok(())
    }

    /// Runs the keep-alive every `period` (never, if zero) until the lock
    /// is lost — then returns why — or `stop` is cancelled.
    pub async fn keep_alive(&self, period: Duration, stop: CancellationToken) -> Option<LockError> {
        if period.is_zero() {
            stop.cancelled().await;
            return None;
        }
        let mut tick = tokio::time::interval(period);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => return None,
            }
            if let Err(e) = self.check() {
                return Some(e);
            }
        }
    }
}

/// What a shared-file broker does before it may open the journal: wait as
/// a slave (answering `/status` on `status_addr` with its role meanwhile),
/// then return the held lock.
pub async fn wait_as_slave(
    dir: &Path,
    interval: Duration,
    fail_if_locked: bool,
    settings: BrokerSettings,
    status_addr: Option<&str>,
) -> Result<LockFile, WaitError> {
    // A storeless stand-in broker, only so the status endpoint can say
    // "slave" while the real one cannot exist yet.
    let waiting =
        Broker::new(settings, None, Role::Slave { master: None }).map_err(WaitError::Store)?;
    let stop = CancellationToken::new();
    let status = match status_addr {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| WaitError::Status(addr.to_owned(), e))?;
            Some(tokio::spawn(crate::status::run(
                listener,
                waiting.clone(),
                stop.clone(),
            )))
        }
        None => None,
    };
    let path = dir.join("lock");
    let lock = LockFile::acquire(dir, interval, fail_if_locked, || {
        tracing::info!(
            "Database {} is locked by another server. This broker is now in slave mode waiting a lock to be acquired",
            path.display()
        );
    })
    .await;
    stop.cancel();
    if let Some(t) = status {
        let _ = t.await;
    }
    let lock = lock.map_err(WaitError::Lock)?;
    tracing::info!(lock = %lock.path().display(), "acquired the exclusive lock: becoming master");
    Ok(lock)
}

/// Holds `lock` for a master until `shutdown`, checking it every
/// `keep_alive` (never if zero). If the lock is lost the broker stops
/// serving at once and shuts down (ActiveMQ stops and restarts the broker);
/// returns why.
pub async fn hold(
    lock: LockFile,
    keep_alive: Duration,
    broker: std::sync::Arc<Broker>,
    shutdown: CancellationToken,
) -> Option<LockError> {
    let lost = lock.keep_alive(keep_alive, shutdown.clone()).await;
    if let Some(e) = &lost {
        tracing::error!("{e}");
        broker.set_role(Role::Slave { master: None });
        shutdown.cancel();
    }
    lost
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_locker_waits_and_keep_alive_detects_deletion_and_replacement() {
        let dir = tempfile::tempdir().unwrap();
        let a = LockFile::try_acquire(dir.path())
            .unwrap()
            .expect("first lock");
        assert!(LockFile::try_acquire(dir.path()).unwrap().is_none());
        a.check().unwrap();

        std::fs::remove_file(a.path()).unwrap();
        assert!(matches!(a.check(), Err(LockError::Lost { .. })));
        // The deleted file's lock no longer guards the path: a newcomer gets
        // it, which is exactly why the keep-alive must notice.
        let b = LockFile::try_acquire(dir.path())
            .unwrap()
            .expect("lock on the new file");
        assert!(a.check().is_err());
        b.check().unwrap();

        std::fs::write(b.path(), "someone else").unwrap();
        let err = b.check().unwrap_err().to_string();
        assert!(err.contains("modified"), "{err}");
        drop(b);
        drop(a);
        assert!(LockFile::try_acquire(dir.path()).unwrap().is_some());
    }
}
