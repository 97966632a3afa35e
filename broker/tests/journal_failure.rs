//! A write error makes the journal refuse everything after it (sticky
//! failure): the broker must stop rather than receipt on a journal whose
//! disk state no longer matches memory. The error is injected for real by
//! making the segment file immutable (`chattr +i`, ext4), so the writer's
//! next `write` fails with EPERM.

mod journal_util;

use amq_broker::store::{Position, Store, StoreError};
use journal_util::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Clears the immutable flag again on drop, also when the test fails.
struct Immutable(PathBuf);

impl Immutable {
    fn set(path: &Path) -> Option<Immutable> {
        let ok = Command::new("chattr")
            .arg("+i")
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Immutable(path.to_owned()))
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

#[tokio::test]
async fn a_failed_write_fails_every_later_append() {
    let dir = tempfile::tempdir().unwrap();
    let j = open(dir.path());
    append(&j, vec![enq("q", "before")]).await;
    let file = dir.path().join(&segment_files(dir.path())[0]);
    let Some(guard) = Immutable::set(&file) else {
        eprintln!("skipped: chattr +i is not available on this filesystem");
        return;
    };
    let err = j.append(vec![enq("q", "lost")]).await.unwrap_err();
    assert!(matches!(err, StoreError::Failed(_)), "{err}");
    assert!(err.to_string().contains("Operation not permitted"), "{err}");
    drop(guard);
    // The disk works again, but the journal does not trust itself any more.
    let again = j.append(vec![enq("q", "after")]).await.unwrap_err();
    assert!(matches!(again, StoreError::Failed(_)), "{again}");
    assert!(matches!(j.recover(), Err(StoreError::Failed(_))));
    drop(j);
    // A restart recovers what was durable, and only that.
    let j = open(dir.path());
    let r = j.recover().unwrap();
    assert_eq!(ids(&r, "q"), ["before"]);
    assert_eq!(r.position, Position(1));
}
