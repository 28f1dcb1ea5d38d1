//! TUN devices (Documentation/networking/tuntap.rst, drivers/net/tun.c): one
//! `OwnedFd` per queue of a layer-3 (`IFF_TUN`) device without packet-info header.
//!
//! Invariants a [`Tun`] keeps:
//! - every queue is attached to the same device, named [`Tun::name`];
//! - the device is not persistent: it disappears when the last queue's fd closes,
//!   so a crashed ringlay leaves no device behind;
//! - the device was created by this `Tun`, never adopted: a name that already
//!   exists (another process's TUN, a persistent one, or a different kind of
//!   device) is refused with `EBUSY`;
//! - the fds are created blocking and close-on-exec. The data path makes them
//!   non-blocking ([`set_nonblocking`]). Since Linux 6.4 the TUN file supports
//!   io_uring's non-blocking attempt (`FMODE_NOWAIT`), and since 6.7 io_uring
//!   has multishot reads: there the workers read with io_uring (a read that
//!   finds the queue empty waits on its poll, no kernel thread). Before, they
//!   wait for readability with an io_uring poll and read with plain syscalls
//!   ([`read_packet`]), because io_uring would hand each read to one of its
//!   kernel worker threads, a thread hop per packet. Writes are plain syscalls
//!   ([`write_packet`]).

use std::fs::OpenOptions;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use super::error::{context, cvt, invalid_input};
use super::ifreq::{check_name, ifreq, ifreq_ioctl, ifreq_name};

/// The TUN/TAP clone device.
const CLONE_DEV: &str = "/dev/net/tun";

/// The most queues one device can have (drivers/net/tun.c `MAX_TAP_QUEUES`).
pub const MAX_QUEUES: usize = 256;

/// `TUNSETIFF` flag: the device has several queues, one per attached fd.
pub const IFF_MULTI_QUEUE: u32 = libc::IFF_MULTI_QUEUE as u32;
/// `TUNSETIFF` flag: every packet is preceded by a `struct virtio_net_hdr`.
pub const IFF_VNET_HDR: u32 = libc::IFF_VNET_HDR as u32;

/// Offload: the kernel may hand over packets with a partial checksum.
pub const TUN_F_CSUM: u32 = libc::TUN_F_CSUM;
/// Offload: the kernel may hand over TCP/IPv4 segments larger than the MTU (TSO).
pub const TUN_F_TSO4: u32 = libc::TUN_F_TSO4;
/// Offload: the kernel may hand over TCP/IPv6 segments larger than the MTU (TSO).
pub const TUN_F_TSO6: u32 = libc::TUN_F_TSO6;
/// Offload: the kernel may hand over UDP/IPv4 segments larger than the MTU (USO,
/// Linux 6.2).
pub const TUN_F_USO4: u32 = libc::TUN_F_USO4;
/// Offload: the kernel may hand over UDP/IPv6 segments larger than the MTU (USO,
/// Linux 6.2).
pub const TUN_F_USO6: u32 = libc::TUN_F_USO6;

/// A TUN device and its queues.
#[derive(Debug)]
pub struct Tun {
    name: String,
    queues: Vec<OwnedFd>,
    vnet_hdr: bool,
}

impl Tun {
    /// Creates the TUN device `name` with `queues` queues.
    ///
    /// Opens `/dev/net/tun` once per queue and attaches each fd with `TUNSETIFF`
    /// (`IFF_TUN | IFF_NO_PI`, `IFF_MULTI_QUEUE` when `queues > 1`, `IFF_VNET_HDR`
    /// when `vnet_hdr`). A single queue asks for a single-queue device, so that
    /// retrying with `queues = 1` works on a kernel that refuses multi-queue.
    /// `name` may be a template such as `"tun%d"`; [`Tun::name`] is the kernel's
    /// choice.
    ///
    /// Errors: `InvalidInput` for a name longer than 15 bytes or otherwise
    /// invalid, and for `queues` outside `1..=256`; `EBUSY` when a device of that
    /// name already exists; `EINVAL` (kind `InvalidInput`) when `queues > 1` and the
    /// kernel refuses `IFF_MULTI_QUEUE`, for the caller to retry with one queue;
    /// `EPERM` without `CAP_NET_ADMIN`. Each error says which queue failed;
    /// [`super::error::raw_os_error`] recovers the errno.
    pub fn create(name: &str, queues: usize, vnet_hdr: bool) -> io::Result<Tun> {
        check_name(name)?;
        if queues == 0 || queues > MAX_QUEUES {
            return Err(invalid_input(format!(
                "tun {name}: {queues} queues requested; a TUN device has 1 to {MAX_QUEUES}"
            )));
        }
        let mut flags = libc::IFF_TUN | libc::IFF_NO_PI;
        if queues > 1 {
            flags |= libc::IFF_MULTI_QUEUE;
        }
        if vnet_hdr {
            flags |= libc::IFF_VNET_HDR;
        }
        let mut actual = name.to_owned();
        let mut fds = Vec::with_capacity(queues);
        for queue in 0..queues {
            // std opens with O_CLOEXEC and without O_NONBLOCK.
            let fd: OwnedFd = OpenOptions::new()
                .read(true)
                .write(true)
                .open(CLONE_DEV)
                .map_err(|e| context(e, format!("open {CLONE_DEV}")))?
                .into();
            let mut ifr = ifreq(&actual)?;
            // The first queue must create the device: IFF_TUN_EXCL makes the kernel
            // answer EBUSY instead of attaching us to an existing device. The later
            // queues attach to the device the first one created.
            let excl = if queue == 0 { libc::IFF_TUN_EXCL } else { 0 };
            // The flags are the low 16 bits of an int (IFF_TUN_EXCL is bit 15).
            ifr.ifr_ifru.ifru_flags = (flags | excl) as u16 as libc::c_short;
            // SAFETY: TUNSETIFF takes a `struct ifreq` and reads and writes only
            // it (drivers/net/tun.c `__tun_chr_ioctl` copies it in and out).
            unsafe { ifreq_ioctl(fd.as_fd(), libc::TUNSETIFF, &mut ifr) }
                .map_err(|e| explain_setiff(e, &actual, queue, queues))?;
            if queue == 0 {
                actual = ifreq_name(&ifr);
            }
            fds.push(fd);
        }
        Ok(Tun {
            name: actual,
            queues: fds,
            vnet_hdr,
        })
    }

    /// The device's name (the kernel's, if a `%d` template was given).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The queues' fds, in attach order; `queues()[k]` is queue `k`.
    pub fn queues(&self) -> &[OwnedFd] {
        &self.queues
    }

    /// Hands the queues over, e.g. one to each worker. The device lives until the
    /// last of them is closed.
    pub fn into_queues(self) -> Vec<OwnedFd> {
        self.queues
    }

    /// Whether every packet carries a `virtio_net_hdr` (`IFF_VNET_HDR`).
    pub fn vnet_hdr(&self) -> bool {
        self.vnet_hdr
    }

    /// Whether the device was created with `IFF_MULTI_QUEUE`.
    pub fn multi_queue(&self) -> bool {
        self.queues.len() > 1
    }
}

/// Adds to a `TUNSETIFF` failure what it most likely means.
fn explain_setiff(err: io::Error, name: &str, queue: usize, queues: usize) -> io::Error {
    let at = format!("TUNSETIFF {name} (queue {} of {queues})", queue + 1);
    let why = match (err.raw_os_error(), queue) {
        (Some(libc::EBUSY), 0) => {
            "a device of this name already exists (a TUN of another process, a persistent \
             TUN, or another kind of device); ringlay creates its own"
        }
        (Some(libc::EINVAL), 0) if queues > 1 => {
            "the kernel refused IFF_MULTI_QUEUE; retry with one queue"
        }
        (Some(libc::EPERM), _) => "creating a TUN device needs CAP_NET_ADMIN",
        _ => return context(err, at),
    };
    context(err, format!("{at}: {why}"))
}

/// Sets the offloads the kernel may use when handing packets to this queue
/// (`TUNSETOFFLOAD`, a mask of the `TUN_F_*` constants). Needs `IFF_VNET_HDR` for
/// anything but 0. The setting is per device: any one queue's fd will do.
pub fn set_offload(fd: BorrowedFd<'_>, flags: u32) -> io::Result<()> {
    // SAFETY: TUNSETOFFLOAD takes its argument by value (drivers/net/tun.c
    // `set_offload(tun, arg)`); no memory is passed.
    let ret = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TUNSETOFFLOAD,
            libc::c_ulong::from(flags),
        )
    };
    cvt(ret)
        .map(drop)
        .map_err(|e| context(e, format!("TUNSETOFFLOAD {flags:#x}")))
}

/// Sets the length of the virtio header that precedes each packet
/// (`TUNSETVNETHDRSZ`): 10 for `virtio_net_hdr`, 12 for `virtio_net_hdr_mrg_rxbuf`
/// (virtio spec 1.1, 5.1.6). The kernel refuses less than 10.
pub fn set_vnet_hdr_len(fd: BorrowedFd<'_>, len: i32) -> io::Result<()> {
    let len: libc::c_int = len;
    // SAFETY: TUNSETVNETHDRSZ reads one int through the pointer, which points to
    // `len`, live for the whole call.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETVNETHDRSZ, &raw const len) };
    cvt(ret)
        .map(drop)
        .map_err(|e| context(e, format!("TUNSETVNETHDRSZ {len}")))
}

/// The `TUNSETIFF` flags this kernel supports (`TUNGETFEATURES`), e.g. to check
/// [`IFF_MULTI_QUEUE`] and [`IFF_VNET_HDR`] before asking for them.
pub fn supported_flags() -> io::Result<u32> {
    let fd: OwnedFd = OpenOptions::new()
        .read(true)
        .write(true)
        .open(CLONE_DEV)
        .map_err(|e| context(e, format!("open {CLONE_DEV}")))?
        .into();
    let mut features: libc::c_uint = 0;
    // SAFETY: TUNGETFEATURES writes one unsigned int through the pointer, which
    // points to `features`, live and exclusive for the whole call.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNGETFEATURES, &raw mut features) };
    cvt(ret).map_err(|e| context(e, "TUNGETFEATURES"))?;
    Ok(features)
}

/// Puts a TUN queue into non-blocking mode, for [`read_packet`] to return
/// `WouldBlock` when the queue is empty.
pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL on a valid descriptor take and return plain integers.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    // SAFETY: as above.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) })
        .map(drop)
        .map_err(|e| context(e, "fcntl(O_NONBLOCK) on a TUN queue"))
}

/// Reads one packet from a TUN queue into `buf` (`WouldBlock` when the queue is
/// empty and non-blocking).
pub fn read_packet(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the whole call.
    let n = cvt(unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) })?;
    Ok(n as usize)
}

/// Writes one packet to a TUN queue.
pub fn write_packet(fd: BorrowedFd<'_>, packet: &[u8]) -> io::Result<usize> {
    // SAFETY: `packet` is valid for reads of `packet.len()` bytes for the whole call.
    let n = cvt(unsafe { libc::write(fd.as_raw_fd(), packet.as_ptr().cast(), packet.len()) })?;
    Ok(n as usize)
}

/// Writes one packet to a TUN queue opened with `IFF_VNET_HDR`, `header` (its
/// `virtio_net_hdr`) first, in one `writev`.
pub fn write_with_header(fd: BorrowedFd<'_>, header: &[u8], packet: &[u8]) -> io::Result<usize> {
    write_gather(fd, &[header, packet])
}

/// Most parts [`write_gather`] takes.
pub const GATHER_MAX: usize = 4;

/// Writes one packet made of up to [`GATHER_MAX`] parts, in order, in one
/// `writev` (the TUN device takes one packet per write, however it is cut).
pub fn write_gather(fd: BorrowedFd<'_>, parts: &[&[u8]]) -> io::Result<usize> {
    if parts.len() > GATHER_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("at most {GATHER_MAX} parts in one TUN write"),
        ));
    }
    let mut slices = [IoSlice::new(&[]); GATHER_MAX];
    for (s, part) in slices.iter_mut().zip(parts) {
        *s = IoSlice::new(part);
    }
    write_vectored(fd, &slices[..parts.len()])
}

/// Most parts [`write_vectored`] takes: the kernel's `UIO_MAXIOV`.
pub const VECTORED_MAX: usize = 1024;

/// Writes one packet made of `parts`, in order, in one `writev`.
pub fn write_vectored(fd: BorrowedFd<'_>, parts: &[IoSlice<'_>]) -> io::Result<usize> {
    if parts.len() > VECTORED_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("at most {VECTORED_MAX} parts in one TUN write"),
        ));
    }
    // SAFETY: `IoSlice` has the layout of an `iovec` (std guarantees it on Unix),
    // and every one describes a live slice, only read by the kernel during the
    // call; the count fits a `c_int` (checked above).
    let n = cvt(unsafe {
        libc::writev(
            fd.as_raw_fd(),
            parts.as_ptr().cast::<libc::iovec>(),
            parts.len() as libc::c_int,
        )
    })?;
    Ok(n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_arguments_before_any_syscall() {
        let err = Tun::create("name_longer_than_15", 1, false).expect_err("long name");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("at most 15"), "{err}");
        for queues in [0, MAX_QUEUES + 1] {
            let err = Tun::create("rl0", queues, false).expect_err("queue count");
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        }
    }

    #[test]
    fn setiff_errors_say_what_they_mean() {
        let busy = explain_setiff(io::Error::from_raw_os_error(libc::EBUSY), "rl0", 0, 2);
        assert!(busy.to_string().contains("already exists"), "{busy}");
        let mq = explain_setiff(io::Error::from_raw_os_error(libc::EINVAL), "rl0", 0, 2);
        assert!(mq.to_string().contains("IFF_MULTI_QUEUE"), "{mq}");
        assert_eq!(super::super::error::raw_os_error(&mq), Some(libc::EINVAL));
        let single = explain_setiff(io::Error::from_raw_os_error(libc::EINVAL), "rl0", 0, 1);
        assert!(!single.to_string().contains("IFF_MULTI_QUEUE"), "{single}");
    }
}
