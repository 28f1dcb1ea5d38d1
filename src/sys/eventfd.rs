//! An eventfd(2) counter, the doorbell that wakes an io_uring worker: a worker
//! keeps a read of it in flight, and [`EventFd::notify`] completes that read,
//! e.g. at shutdown.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::error::{context, cvt};

/// An eventfd: blocking (io_uring arms a poll on it itself) and close-on-exec.
#[derive(Debug)]
pub struct EventFd(OwnedFd);

impl EventFd {
    /// A new eventfd with counter 0 (`EFD_CLOEXEC`, blocking).
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: eventfd takes two integers and touches no memory of ours.
        let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) })
            .map_err(|e| context(e, "eventfd"))?;
        // SAFETY: `fd` is a new descriptor that nothing else owns; the OwnedFd
        // becomes its only owner and closes it on drop.
        Ok(EventFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Adds 1 to the counter, waking whoever reads or polls it.
    pub fn notify(&self) -> io::Result<()> {
        let one: u64 = 1;
        loop {
            // SAFETY: the kernel reads 8 bytes from `one`, live for the whole call.
            let n = cvt(unsafe {
                libc::write(
                    self.0.as_raw_fd(),
                    (&raw const one).cast::<libc::c_void>(),
                    size_of::<u64>(),
                )
            });
            match n {
                Ok(8) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(context(e, "eventfd write")),
                // An eventfd write is all 8 bytes or an error.
                Ok(n) => return Err(io::Error::other(format!("eventfd write returned {n}"))),
            }
        }
    }

    /// Takes the counter's value and resets it to 0, blocking while it is 0.
    pub fn read(&self) -> io::Result<u64> {
        let mut value: u64 = 0;
        loop {
            // SAFETY: the kernel writes 8 bytes to `value`, live and exclusive for
            // the whole call.
            let n = cvt(unsafe {
                libc::read(
                    self.0.as_raw_fd(),
                    (&raw mut value).cast::<libc::c_void>(),
                    size_of::<u64>(),
                )
            });
            match n {
                Ok(8) => return Ok(value),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(context(e, "eventfd read")),
                Ok(n) => return Err(io::Error::other(format!("eventfd read returned {n}"))),
            }
        }
    }

    /// The descriptor, e.g. to submit a read of it to io_uring.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl AsFd for EventFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_add_up_and_read_resets() {
        let efd = EventFd::new().expect("eventfd");
        efd.notify().expect("notify");
        efd.notify().expect("notify");
        assert_eq!(efd.read().expect("read"), 2);
        efd.notify().expect("notify");
        assert_eq!(efd.read().expect("read"), 1);
    }

    #[test]
    fn notify_wakes_a_blocked_reader() {
        let efd = std::sync::Arc::new(EventFd::new().expect("eventfd"));
        let reader = {
            let efd = efd.clone();
            std::thread::spawn(move || efd.read())
        };
        std::thread::sleep(std::time::Duration::from_millis(20));
        efd.notify().expect("notify");
        assert_eq!(reader.join().expect("reader thread").expect("read"), 1);
    }

    #[test]
    fn is_blocking_and_cloexec() {
        let efd = EventFd::new().expect("eventfd");
        // SAFETY: F_GETFL/F_GETFD take no argument and only query the fd.
        let (fl, fd) = unsafe {
            (
                libc::fcntl(efd.as_fd().as_raw_fd(), libc::F_GETFL),
                libc::fcntl(efd.as_fd().as_raw_fd(), libc::F_GETFD),
            )
        };
        assert_eq!(fl & libc::O_NONBLOCK, 0);
        assert_ne!(fd & libc::FD_CLOEXEC, 0);
    }
}
