//! `struct ifreq` (netdevice(7)): building one for an interface name, and the
//! ioctl that passes it to the kernel, for the TUN ioctls of [`super::tun`]
//! (`TUNSETIFF` and such, which have no netlink equivalent). [`check_name`] is
//! also what [`super::netdev`] checks names with.
//!
//! Invariant: a name that leaves [`check_name`] fits `ifr_name` with its NUL and is
//! one the kernel's `dev_valid_name` could accept, so a refused name is reported as
//! `InvalidInput` here rather than as an unexplained `EINVAL` from the kernel.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::error::{cvt, invalid_input};

/// The longest interface name, in bytes: `IFNAMSIZ` less the terminating NUL.
pub(crate) const MAX_NAME_LEN: usize = libc::IFNAMSIZ - 1;

/// Refuses names the kernel would refuse (net/core/dev.c `dev_valid_name`), saying why.
pub(crate) fn check_name(name: &str) -> io::Result<()> {
    if name.is_empty() {
        return Err(invalid_input("interface name is empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(invalid_input(format!(
            "interface name {name:?} is {} bytes long; Linux allows at most {MAX_NAME_LEN} (IFNAMSIZ - 1)",
            name.len()
        )));
    }
    if name == "." || name == ".." {
        return Err(invalid_input(format!(
            "interface name {name:?} is reserved"
        )));
    }
    if name
        .bytes()
        .any(|b| b == 0 || b == b'/' || b == b':' || b.is_ascii_whitespace())
    {
        return Err(invalid_input(format!(
            "interface name {name:?} contains NUL, '/', ':' or whitespace"
        )));
    }
    Ok(())
}

/// A zeroed `ifreq` with `ifr_name` set to `name` (checked by [`check_name`]).
pub(crate) fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    check_name(name)?;
    // SAFETY: `ifreq` is plain old data (byte arrays and a union of integers,
    // sockaddrs and a raw pointer); all-zero bytes are a valid value of each field.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    // check_name guarantees name.len() < IFNAMSIZ, so the NUL after it stays.
    for (dst, src) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    Ok(ifr)
}

/// The name the kernel left in `ifr_name` (it fills in `%d` templates).
pub(crate) fn ifreq_name(ifr: &libc::ifreq) -> String {
    let bytes: Vec<u8> = ifr
        .ifr_name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// `ioctl(fd, req, ifr)`.
///
/// # Safety
///
/// `req` must be a request whose argument is a `struct ifreq` and which reads and
/// writes only the struct itself: no pointer inside it (`ifru_data`) is followed.
/// `TUNSETIFF` is such.
pub(crate) unsafe fn ifreq_ioctl(
    fd: BorrowedFd<'_>,
    req: libc::Ioctl,
    ifr: &mut libc::ifreq,
) -> io::Result<()> {
    // SAFETY: `ifr` is a valid, exclusive `ifreq` for the duration of the call, and
    // by this function's contract the kernel touches nothing outside it.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), req, std::ptr::from_mut(ifr)) }).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_kernel_accepts() {
        for name in ["eth0", "flannel0", "tun%d", "a", "exactly15chars_"] {
            assert!(check_name(name).is_ok(), "{name}");
            let ifr = ifreq(name).expect("valid name");
            assert_eq!(ifreq_name(&ifr), name);
        }
    }

    #[test]
    fn too_long_names_name_the_limit() {
        let err = check_name("sixteen_chars_xx").expect_err("16 bytes");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("at most 15"), "{err}");
    }

    #[test]
    fn names_the_kernel_refuses() {
        for name in ["", ".", "..", "a/b", "a:1", "a b", "a\tb", "a\0b"] {
            let err = check_name(name).expect_err(name);
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{name:?}");
        }
    }
}
