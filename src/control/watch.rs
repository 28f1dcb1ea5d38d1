//! Noticing that a file changed, by polling its metadata.
//!
//! The daemon stats the static leases file once a second (and on SIGHUP) and
//! re-reads it when the [`FileStamp`] differs. Polling is used rather than inotify
//! because it needs no watch on the directory and sees every way a file changes:
//!
//! * written in place (`>`, most config management): the length or the mtime moves;
//! * replaced by rename (vim, `sed -i`, Kubernetes ConfigMap symlink swaps): the
//!   inode or device moves, even when the new file has the old length and mtime.
//!
//! The limit is the filesystem's timestamp granularity: two in-place writes of the
//! same length within one clock tick look alike. An editor that renames, or a
//! SIGHUP, covers that case.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::SystemTime;

/// What identifies one version of a file: where it lives, how long it is and when
/// it was last written. [`std::fs::metadata`] follows symlinks, so a swapped link
/// target counts as a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileStamp {
    /// The last modification time (nanosecond resolution where the filesystem has it).
    pub mtime: SystemTime,
    /// The length in bytes.
    pub len: u64,
    /// The inode number: a new one means the file was replaced.
    pub inode: u64,
    /// The device holding the inode.
    pub device: u64,
}

impl FileStamp {
    /// Stats `path` (following symlinks).
    pub fn of(path: &Path) -> io::Result<FileStamp> {
        let m = std::fs::metadata(path)?;
        Ok(FileStamp {
            mtime: m.modified()?,
            len: m.len(),
            inode: m.ino(),
            device: m.dev(),
        })
    }

    /// True when `other` is not the version this stamp describes.
    pub fn changed(&self, other: &FileStamp) -> bool {
        self != other
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::time::Duration;

    use super::*;
    use crate::control::TempDir;

    /// Sets `path`'s mtime, so tests do not depend on the clock's granularity.
    fn set_mtime(path: &Path, t: SystemTime) {
        fs::File::options()
            .write(true)
            .open(path)
            .expect("open")
            .set_modified(t)
            .expect("set mtime");
    }

    #[test]
    fn unchanged_file_is_unchanged() {
        let t = TempDir::new("stamp-same");
        let p = t.0.join("leases.json");
        fs::write(&p, "{}").expect("write");
        let a = FileStamp::of(&p).expect("stat");
        let b = FileStamp::of(&p).expect("stat");
        assert!(!a.changed(&b));
        assert_eq!(a.len, 2);
    }

    #[test]
    fn in_place_writes_are_seen() {
        let t = TempDir::new("stamp-inplace");
        let p = t.0.join("leases.json");
        fs::write(&p, "{}").expect("write");
        let before = FileStamp::of(&p).expect("stat");

        // A different length.
        fs::write(&p, "{ }").expect("rewrite");
        let longer = FileStamp::of(&p).expect("stat");
        assert!(before.changed(&longer));
        assert_eq!(longer.inode, before.inode);

        // The same length, a later mtime.
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        set_mtime(&p, t0);
        let a = FileStamp::of(&p).expect("stat");
        fs::write(&p, "{\n}").expect("rewrite");
        set_mtime(&p, t0 + Duration::from_millis(1));
        let b = FileStamp::of(&p).expect("stat");
        assert_eq!((a.len, a.inode), (b.len, b.inode));
        assert!(a.changed(&b));
    }

    #[test]
    fn rename_over_is_seen_even_with_equal_length_and_mtime() {
        let t = TempDir::new("stamp-rename");
        let p = t.0.join("leases.json");
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        fs::write(&p, "{}").expect("write");
        set_mtime(&p, t0);
        let before = FileStamp::of(&p).expect("stat");

        // What an editor does: write a new file beside the old one, rename it over.
        let tmp = t.0.join("leases.json.swp");
        fs::write(&tmp, "{}").expect("write");
        set_mtime(&tmp, t0);
        fs::rename(&tmp, &p).expect("rename");
        let after = FileStamp::of(&p).expect("stat");

        assert_eq!((after.len, after.mtime), (before.len, before.mtime));
        assert_ne!(after.inode, before.inode);
        assert!(before.changed(&after));
    }

    #[test]
    fn a_missing_file_is_an_io_error() {
        let t = TempDir::new("stamp-missing");
        let err = FileStamp::of(&t.0.join("absent")).expect_err("missing");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
