//! Errors of the `sys` wrappers: the kernel's `errno` with a sentence of context.
//!
//! A bare `EINVAL` from an ioctl tells nobody what went wrong, so every wrapper
//! says which call on which interface failed. The context is added without losing
//! the errno: [`raw_os_error`] finds it again behind the message, which is how a
//! caller decides to degrade (e.g. retry a TUN with one queue on `EINVAL`).

use std::error::Error as StdError;
use std::fmt;
use std::io;

/// An OS error and what was being done when it happened.
#[derive(Debug)]
struct Context {
    what: String,
    source: io::Error,
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.source)
    }
}

impl StdError for Context {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.source)
    }
}

/// Wraps `err` with `what`, keeping its kind and (through [`raw_os_error`]) its errno.
/// `ENODEV` ("no such device", which std leaves uncategorized) becomes `NotFound`.
pub(crate) fn context(err: io::Error, what: impl Into<String>) -> io::Error {
    let kind = match err.raw_os_error() {
        Some(libc::ENODEV) => io::ErrorKind::NotFound,
        _ => err.kind(),
    };
    io::Error::new(
        kind,
        Context {
            what: what.into(),
            source: err,
        },
    )
}

/// An `InvalidInput` error for arguments refused before any system call.
pub(crate) fn invalid_input(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what.into())
}

/// The errno behind `err`, also when a `sys` wrapper added context to it.
pub fn raw_os_error(err: &io::Error) -> Option<i32> {
    if let Some(errno) = err.raw_os_error() {
        return Some(errno);
    }
    err.get_ref()?
        .downcast_ref::<Context>()
        .and_then(|c| raw_os_error(&c.source))
}

/// A system call's return type whose `-1` means "failed, see `errno`": `c_int`
/// for most calls, `ssize_t` for `read`/`write`/`sendmmsg`, `c_long` for
/// `syscall(2)`.
pub(crate) trait MinusOne: Copy + PartialEq {
    /// The failure value.
    const MINUS_ONE: Self;
}

macro_rules! impl_minus_one {
    ($($t:ty),*) => { $(impl MinusOne for $t { const MINUS_ONE: Self = -1; })* };
}
impl_minus_one!(i16, i32, i64, isize);

/// Turns a C return value (`-1` and `errno` on failure) into an `io::Result`,
/// whatever the call's integer type: the one place the `-1` check is written.
pub(crate) fn cvt<T: MinusOne>(ret: T) -> io::Result<T> {
    if ret == T::MINUS_ONE {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_keeps_kind_errno_and_says_what() {
        let err = context(io::Error::from_raw_os_error(libc::EBUSY), "TUNSETIFF x");
        assert_eq!(err.kind(), io::ErrorKind::ResourceBusy);
        assert_eq!(raw_os_error(&err), Some(libc::EBUSY));
        let text = err.to_string();
        assert!(text.starts_with("TUNSETIFF x: "), "{text}");
        let nested = context(err, "outer");
        assert_eq!(raw_os_error(&nested), Some(libc::EBUSY));
    }

    #[test]
    fn no_such_device_is_not_found() {
        let err = context(io::Error::from_raw_os_error(libc::ENODEV), "SIOCGIFMTU x");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert_eq!(raw_os_error(&err), Some(libc::ENODEV));
    }

    #[test]
    fn plain_errors_have_no_errno() {
        assert_eq!(raw_os_error(&invalid_input("bad")), None);
        assert_eq!(cvt(3).ok(), Some(3));
        assert!(cvt(-1).is_err());
        assert_eq!(cvt(7isize).ok(), Some(7));
        assert!(cvt(-1 as libc::ssize_t).is_err());
        assert!(cvt(-1 as libc::c_long).is_err());
    }
}
