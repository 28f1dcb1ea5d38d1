//! The tunnel's UDP sockets: creation with the options the data path relies on,
//! CPU steering of a `SO_REUSEPORT` group, and UDP GSO/GRO switches and probes.
//!
//! Sockets are blocking and close-on-exec: io_uring arms a poll on a blocking
//! socket itself and would complete with `EAGAIN` on a non-blocking one.

use std::io;
use std::mem::size_of;
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use socket2::{Domain, Protocol, SockRef, Socket, Type};

use super::error::{context, cvt, invalid_input};
use super::sockaddr::RawSockAddr;

/// A listening unix stream socket at `path` whose file is created with at most
/// `mode` (less the umask): the socket inode's mode is set with `fchmod` before
/// `bind`, which creates the file from it (Linux `unix_bind`), so there is no
/// moment when the file is open to more than `mode` allows. Non-blocking and
/// close-on-exec.
pub fn unix_listener(
    path: &std::path::Path,
    mode: u32,
) -> io::Result<std::os::unix::net::UnixListener> {
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    // SAFETY: fchmod takes a file descriptor, owned by `socket` and open for the
    // call, and a mode; no pointer.
    cvt(unsafe { libc::fchmod(socket.as_raw_fd(), mode as libc::mode_t) })
        .map_err(|e| context(e, "fchmod on the unix socket"))?;
    socket.bind(&socket2::SockAddr::unix(path)?)?;
    socket.listen(128)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Sets an `int` socket option.
fn set_int_opt(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the option value is one int, read by the kernel through the pointer,
    // which points to `value`, live for the whole call; the length says so.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw const value).cast::<libc::c_void>(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// Creates a UDP socket bound to `bind`, for one worker's side of the tunnel.
///
/// - blocking, close-on-exec, `SO_REUSEADDR`, and `SO_REUSEPORT` if `reuseport`
///   (one socket per worker on the same port, see
///   [`attach_reuseport_cpu_steering`]). On Linux, UDP `SO_REUSEADDR` lets any
///   other socket that also sets it bind the same address and port; it keeps out
///   sockets that set neither option, but is no lock against a second ringlay;
/// - receive and send buffers of `buf_bytes` (0 keeps the defaults): with
///   `SO_RCVBUFFORCE`/`SO_SNDBUFFORCE` as root, past `net.core.rmem_max`/`wmem_max`,
///   else `SO_RCVBUF`/`SO_SNDBUF`, capped by those sysctls. The kernel doubles the
///   value for its bookkeeping;
/// - IPv6: `IPV6_V6ONLY`, so an IPv4 and an IPv6 socket can share the port;
/// - IPv4: `IP_MTU_DISCOVER = IP_PMTUDISC_DONT`: outer packets leave with DF
///   clear and the socket ignores path-MTU feedback.
///
/// Why DF clear: it is what flannel's peers do. The kernel's vxlan device sends
/// its outer IPv4 header with DF clear unless configured otherwise (`df unset`,
/// drivers/net/vxlan), so a ringlay node and a kernel node treat the underlay
/// alike. The overlay MTU (underlay MTU less the tunnel overhead) already keeps
/// every outer packet within the underlay MTU, so in a correct setup nothing is
/// fragmented either way; with a smaller hop somewhere, or a misconfigured MTU,
/// a router fragments the packet instead of dropping it and reporting to an
/// ICMP that firewalls often eat, and a forged "fragmentation needed" cannot
/// shrink the path MTU of every tunnel packet. Fragmentation, if it happens, is
/// of the outer packet and reassembled by the peer's kernel: the inner TCP's own
/// PMTU discovery still sees the overlay MTU. IPv6 has no DF bit and routers do not
/// fragment, so IPv6 sockets keep the default (`IPV6_PMTUDISC_WANT`), which
/// fragments at the source to the learned path MTU.
pub fn udp_socket(bind: SocketAddr, reuseport: bool, buf_bytes: usize) -> io::Result<UdpSocket> {
    build_udp_socket(bind, true, reuseport, buf_bytes)
}

/// Like [`udp_socket`], an IPv6 socket on `[::]:port` that takes IPv4 as well
/// (`IPV6_V6ONLY` off): one socket for a node that tunnels over both underlay
/// families. IPv4 peers are its IPv4-mapped addresses (`::ffff:a.b.c.d`), and
/// its IPv4 datagrams leave with DF clear as an IPv4 socket's do.
pub fn dual_stack_udp_socket(
    port: u16,
    reuseport: bool,
    buf_bytes: usize,
) -> io::Result<UdpSocket> {
    let any = SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0));
    build_udp_socket(any, false, reuseport, buf_bytes)
}

fn build_udp_socket(
    bind: SocketAddr,
    v6_only: bool,
    reuseport: bool,
    buf_bytes: usize,
) -> io::Result<UdpSocket> {
    let udp = |e, what: &str| context(e, format!("udp socket {bind}: {what}"));
    // socket2 creates sockets with SOCK_CLOEXEC, and blocking.
    let sock = Socket::new(Domain::for_address(bind), Type::DGRAM, Some(Protocol::UDP))
        .map_err(|e| udp(e, "socket"))?;
    sock.set_reuse_address(true)
        .map_err(|e| udp(e, "SO_REUSEADDR"))?;
    if reuseport {
        sock.set_reuse_port(true)
            .map_err(|e| udp(e, "SO_REUSEPORT"))?;
    }
    if let SocketAddr::V6(_) = bind {
        sock.set_only_v6(v6_only)
            .map_err(|e| udp(e, "IPV6_V6ONLY"))?;
    }
    // For the IPv4 traffic of an IPv4 or a dual-stack socket (the option is the
    // IPv4 layer's, which a dual-stack socket's IPv4 datagrams go through).
    if bind.is_ipv4() || !v6_only {
        set_int_opt(
            sock.as_fd(),
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_DONT,
        )
        .map_err(|e| udp(e, "IP_MTU_DISCOVER"))?;
    }
    if buf_bytes > 0 {
        set_buffers(sock.as_fd(), buf_bytes).map_err(|e| udp(e, "buffer sizes"))?;
    }
    sock.bind(&bind.into()).map_err(|e| udp(e, "bind"))?;
    Ok(sock.into())
}

/// Sets both buffer sizes, forced past the sysctl limits when privileged.
fn set_buffers(fd: BorrowedFd<'_>, bytes: usize) -> io::Result<()> {
    // The kernel doubles the value; beyond INT_MAX / 2 it saturates anyway.
    let value = libc::c_int::try_from(bytes)
        .unwrap_or(libc::c_int::MAX / 2)
        .min(libc::c_int::MAX / 2);
    for (force, plain) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        match set_int_opt(fd, libc::SOL_SOCKET, force, value) {
            Ok(()) => {}
            // Without CAP_NET_ADMIN: the plain option, capped at rmem_max/wmem_max.
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                set_int_opt(fd, libc::SOL_SOCKET, plain, value)?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The classic BPF program of [`attach_reuseport_cpu_steering`]:
/// `A = cpu; A = A % groups; return A`.
pub fn cpu_steering_program(groups: u32) -> [libc::sock_filter; 3] {
    let insn = |code: u32, k: u32| libc::sock_filter {
        // Opcodes are 16 bits (include/uapi/linux/filter.h); these are all < 0x100.
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    [
        // Ancillary load: the number of the CPU running the program.
        insn(
            libc::BPF_LD | libc::BPF_W | libc::BPF_ABS,
            (libc::SKF_AD_OFF + libc::SKF_AD_CPU) as u32,
        ),
        insn(libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K, groups),
        insn(libc::BPF_RET | libc::BPF_A, 0),
    ]
}

/// Steers each datagram of a `SO_REUSEPORT` group to the socket whose index is the
/// receiving CPU's number modulo `groups` (`SO_ATTACH_REUSEPORT_CBPF`).
///
/// The program belongs to the whole group: attach it once, on any socket of it.
/// Sockets are indexed in the order they were bound, so the `k`-th bound socket
/// gets the datagrams processed on CPUs `k`, `k + groups`, …; `groups` should be
/// the number of sockets (an index past the last socket falls back to the
/// kernel's hash).
///
/// Why: worker `k` is pinned to CPU `k` and owns the `k`-th socket. A datagram
/// whose receive softirq runs on CPU `k` is then queued to the socket of the worker
/// on that same CPU: no cross-CPU wakeup, and the packet's cache lines stay where
/// they were touched. With a NIC, RSS/RPS picks that CPU per flow; with a veth,
/// the receive softirq runs on the CPU of the sending thread (`veth_xmit` queues
/// to the local backlog), so a flow stays on one core end to end. The kernel's
/// default 4-tuple hash would instead spread flows over workers regardless of
/// where they arrive.
pub fn attach_reuseport_cpu_steering(sock: &UdpSocket, groups: u32) -> io::Result<()> {
    attach_reuseport_program(sock, groups, &mut cpu_steering_program(groups), "cpu")
}

/// Attaches `program`, which picks one of `groups` sockets, to the reuseport
/// group of `sock` (`SO_ATTACH_REUSEPORT_CBPF`); `what` names the steering key
/// in errors.
fn attach_reuseport_program(
    sock: &UdpSocket,
    groups: u32,
    program: &mut [libc::sock_filter],
    what: &str,
) -> io::Result<()> {
    if groups == 0 {
        return Err(invalid_input(
            "reuseport steering: groups must be at least 1",
        ));
    }
    let prog = libc::sock_fprog {
        len: program.len() as libc::c_ushort,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: the option value is a `sock_fprog` whose `filter` points to `len`
    // instructions in `program`; both live for the whole call, and the kernel
    // copies the program before returning (net/core/filter.c `sk_reuseport_attach_filter`).
    let ret = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            (&raw const prog).cast::<libc::c_void>(),
            size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    cvt(ret).map(drop).map_err(|e| {
        context(
            e,
            format!("SO_ATTACH_REUSEPORT_CBPF ({what} % {groups}); the socket needs SO_REUSEPORT"),
        )
    })
}

/// The classic BPF program of [`attach_reuseport_port_steering`]:
/// `A = outer UDP source port; A = A % groups; return A`.
///
/// For a UDP reuseport group the program runs with the packet's data starting
/// after the UDP header, so the port is read relative to the network header
/// (`SKF_NET_OFF`): after the 20-byte IPv4 header, or the 40-byte IPv6 one,
/// whichever the version nibble says (a dual-stack socket's group gets both).
/// Tunnel peers send neither IPv4 options nor IPv6 extension headers; a packet
/// with them only gets an arbitrary choice, never an invalid one.
pub fn port_steering_program(groups: u32) -> [libc::sock_filter; 8] {
    let insn = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    let net = |offset: i32| (libc::SKF_NET_OFF + offset) as u32;
    [
        // A = the IP version.
        insn(libc::BPF_LD | libc::BPF_B | libc::BPF_ABS, 0, 0, net(0)),
        insn(libc::BPF_ALU | libc::BPF_RSH | libc::BPF_K, 0, 0, 4),
        // IPv6: skip to the load after the 40-byte header.
        insn(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, 2, 0, 6),
        insn(libc::BPF_LD | libc::BPF_H | libc::BPF_ABS, 0, 0, net(20)),
        insn(libc::BPF_JMP | libc::BPF_JA, 0, 0, 1),
        insn(libc::BPF_LD | libc::BPF_H | libc::BPF_ABS, 0, 0, net(40)),
        insn(libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K, 0, 0, groups),
        insn(libc::BPF_RET | libc::BPF_A, 0, 0, 0),
    ]
}

/// Steers each datagram of a `SO_REUSEPORT` group to the socket whose index is its
/// outer UDP source port modulo `groups` (`SO_ATTACH_REUSEPORT_CBPF`).
///
/// Why: every ringlay worker sends from its own source port, and the kernel's
/// vxlan device picks the source port from the inner flow's hash, so one inner flow
/// always arrives with one source port: it lands on one receiving worker (no
/// reordering), while different flows and different sending workers spread over
/// all of them. Attach once, on any socket of the group.
pub fn attach_reuseport_port_steering(sock: &UdpSocket, groups: u32) -> io::Result<()> {
    attach_reuseport_program(
        sock,
        groups,
        &mut port_steering_program(groups),
        "source port",
    )
}

/// Turns UDP GRO on or off (`UDP_GRO`, Linux 5.0): the kernel may then deliver
/// several datagrams of one flow as one buffer, with their size in a
/// `UDP_GRO` control message.
pub fn set_udp_gro(sock: impl AsFd, on: bool) -> io::Result<()> {
    set_int_opt(
        sock.as_fd(),
        libc::SOL_UDP,
        libc::UDP_GRO,
        libc::c_int::from(on),
    )
    .map_err(|e| context(e, "UDP_GRO"))
}

/// Sets the default UDP GSO segment size (`UDP_SEGMENT`, Linux 4.18): a send
/// longer than `segment` is split by the kernel into datagrams of that size. 0
/// turns it off.
pub fn set_udp_segment(sock: impl AsFd, segment: u16) -> io::Result<()> {
    set_int_opt(
        sock.as_fd(),
        libc::SOL_UDP,
        libc::UDP_SEGMENT,
        libc::c_int::from(segment),
    )
    .map_err(|e| context(e, format!("UDP_SEGMENT {segment}")))
}

/// Most datagrams [`send_many`] passes to one `sendmmsg`.
pub const SEND_MANY_MAX: usize = 64;

/// Sends each of `datagrams` to `dest` on `sock` with one `sendmmsg` call (at
/// most [`SEND_MANY_MAX`]; the rest are ignored). Returns how many the kernel
/// took; a non-blocking socket with a full buffer takes fewer.
pub fn send_many(sock: impl AsFd, dest: SocketAddr, datagrams: &[&[u8]]) -> io::Result<usize> {
    let n = datagrams.len().min(SEND_MANY_MAX);
    let (mut addr, addr_len) = RawSockAddr::encode(dest);
    let mut iov = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; SEND_MANY_MAX];
    // SAFETY: all-zero is a valid mmsghdr (null pointers, zero lengths).
    let mut msgs: [libc::mmsghdr; SEND_MANY_MAX] = unsafe { std::mem::zeroed() };
    for (k, d) in datagrams[..n].iter().enumerate() {
        iov[k] = libc::iovec {
            iov_base: d.as_ptr().cast_mut().cast(),
            iov_len: d.len(),
        };
        let h = &mut msgs[k].msg_hdr;
        h.msg_name = addr.as_mut_ptr();
        h.msg_namelen = addr_len;
        h.msg_iov = &raw mut iov[k];
        h.msg_iovlen = 1;
    }
    // SAFETY: the first `n` headers point to the address, iovecs and datagram
    // slices above, all live and only read by the kernel during the call.
    let sent =
        cvt(unsafe { libc::sendmmsg(sock.as_fd().as_raw_fd(), msgs.as_mut_ptr(), n as u32, 0) })?;
    Ok(sent as usize)
}

/// Whether `option` of level `SOL_UDP` is known to this kernel, set to 0 on a
/// scratch socket: `ENOPROTOOPT` means no.
fn udp_option_supported(option: libc::c_int) -> io::Result<bool> {
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    match set_int_opt(sock.as_fd(), libc::SOL_UDP, option, 0) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOPROTOOPT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether the kernel can segment UDP sends (`UDP_SEGMENT`, GSO).
pub fn udp_segment_supported() -> io::Result<bool> {
    udp_option_supported(libc::UDP_SEGMENT).map_err(|e| context(e, "probe UDP_SEGMENT"))
}

/// Whether the kernel can coalesce UDP receives (`UDP_GRO`).
pub fn udp_gro_supported() -> io::Result<bool> {
    udp_option_supported(libc::UDP_GRO).map_err(|e| context(e, "probe UDP_GRO"))
}

/// The socket's receive buffer size as the kernel accounts it (double the value
/// set), e.g. to log whether a forced size took effect.
pub fn recv_buffer_size(sock: &UdpSocket) -> io::Result<usize> {
    SockRef::from(sock).recv_buffer_size()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddrV4};

    #[test]
    fn unix_listener_file_is_created_with_the_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = crate::control::TempDir::new("unix-listener");
        let path = dir.0.join("s.sock");
        let listener = unix_listener(&path, 0o600).expect("bind");
        // Without the fchmod the file would be 0777 less the umask.
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
        assert!(std::os::unix::net::UnixStream::connect(&path).is_ok());
        drop(listener);
    }

    #[test]
    fn steering_program_is_cpu_mod_groups() {
        let p = cpu_steering_program(4);
        // ld [SKF_AD_OFF + SKF_AD_CPU]: BPF_LD|BPF_W|BPF_ABS = 0x20, k = 0xfffff024.
        assert_eq!((p[0].code, p[0].k), (0x20, 0xffff_f024));
        // mod #4: BPF_ALU|BPF_MOD|BPF_K = 0x94.
        assert_eq!((p[1].code, p[1].k), (0x94, 4));
        // ret a: BPF_RET|BPF_A = 0x16.
        assert_eq!((p[2].code, p[2].k), (0x16, 0));
        assert!(p.iter().all(|i| i.jt == 0 && i.jf == 0));
    }

    #[test]
    fn sockets_and_steering_without_traffic() {
        // Bound but never used to send: test traffic belongs in test namespaces.
        let bind = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0));
        let a = udp_socket(bind, true, 256 * 1024).expect("udp socket on 127.0.0.1");
        let b = udp_socket(bind, false, 0).expect("udp socket on 127.0.0.1");
        assert!(recv_buffer_size(&a).expect("SO_RCVBUF") > 0);
        assert_ne!(
            a.local_addr().expect("bound"),
            b.local_addr().expect("bound")
        );
        attach_reuseport_cpu_steering(&a, 1).expect("steering on a reuseport socket");
        attach_reuseport_port_steering(&a, 2).expect("port steering on a reuseport socket");
        let p = port_steering_program(3);
        let net = |o: i32| (libc::SKF_NET_OFF + o) as u32;
        // ld b [SKF_NET_OFF]; rsh #4: the version nibble.
        assert_eq!((p[0].code, p[0].k), (0x30, net(0)));
        assert_eq!((p[1].code, p[1].k), (0x74, 4));
        // jeq #6 jumps over the IPv4 load and its ja, to the IPv6 load.
        assert_eq!((p[2].code, p[2].jt, p[2].jf, p[2].k), (0x15, 2, 0, 6));
        // ld h [SKF_NET_OFF + 20 or 40]: BPF_LD|BPF_H|BPF_ABS = 0x28, the UDP
        // source port after either header.
        assert_eq!((p[3].code, p[3].k), (0x28, net(20)));
        assert_eq!((p[4].code, p[4].k), (0x05, 1));
        assert_eq!((p[5].code, p[5].k), (0x28, net(40)));
        assert_eq!((p[6].code, p[6].k), (0x94, 3));
        let dual = dual_stack_udp_socket(0, true, 0).expect("dual-stack socket");
        attach_reuseport_port_steering(&dual, 2).expect("port steering, dual-stack");
        assert_eq!(
            attach_reuseport_cpu_steering(&a, 0)
                .expect_err("zero groups")
                .kind(),
            io::ErrorKind::InvalidInput
        );
    }

    #[test]
    fn gso_gro_probes_answer() {
        // Linux 6.x has both; the point is that the probes do not error.
        udp_segment_supported().expect("probe UDP_SEGMENT");
        udp_gro_supported().expect("probe UDP_GRO");
    }
}
