//! `ringlay::sys` against the real kernel: TUN devices, interface configuration,
//! the tunnel's UDP sockets and their CPU steering, eventfd.
//!
//! Everything that changes the network runs inside a network namespace the test
//! creates for itself (see [`in_netns`]), under documentation and cluster
//! addresses only. Needs root: outside CI a missing capability skips
//! with a printed reason, under CI (`CI=true`) it fails.

use std::env;
use std::io::{self, Read};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use ringlay::sys::error::raw_os_error;
use ringlay::sys::eventfd::EventFd;
use ringlay::sys::tun::{self, Tun};
use ringlay::sys::uring::Ring;
use ringlay::sys::{caps, cpu, netdev, sockaddr, socket};

/// Set in the environment of the re-executed test binary: the namespace it runs in.
const CHILD_ENV: &str = "RINGLAY_SYS_TEST_NETNS";
/// How long the test inside a namespace may take before it is killed.
const CHILD_TIMEOUT: Duration = Duration::from_secs(60);

/// Whether this test may change the network; prints why not, or fails under CI.
fn privileged(test: &str) -> bool {
    let has_ip = Command::new("ip")
        .arg("-V")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let missing = match (caps::has_cap_net_admin(), has_ip) {
        (true, true) => return true,
        (false, _) => "CAP_NET_ADMIN (run as root)",
        (true, false) => "the `ip` command (Debian package iproute2)",
    };
    assert!(
        env::var("CI").as_deref() != Ok("true"),
        "{test}: needs {missing}, which CI must have"
    );
    eprintln!("skipping {test}: needs {missing}");
    false
}

/// Runs `ip ARGS`, panicking with its stderr if it fails.
fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace this test created; deleted on drop, also when the test
/// panics.
struct Netns {
    name: String,
}

impl Netns {
    /// Creates `sys-<pid>-<n>`, unique within this run and across parallel runs.
    fn create() -> Netns {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "sys-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &name]);
        Netns { name }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let deleted = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        if !deleted.is_ok_and(|s| s.success()) {
            eprintln!("could not delete network namespace {}", self.name);
        }
    }
}

/// Runs `body` inside a network namespace of its own.
///
/// The test process stays in the root namespace: it creates the namespace, then
/// re-executes its own binary inside it (`ip netns exec NS <this binary> --exact
/// <test>`) with [`CHILD_ENV`] naming the namespace. In that child the same test
/// function calls `in_netns` again, which now just runs `body`. The parent relays
/// the child's output, fails if the child failed, ran no test (a wrong
/// `test_name`), or took longer than [`CHILD_TIMEOUT`] (then it kills the child it
/// started), and deletes the namespace, whatever happened, by dropping [`Netns`].
///
/// Re-executing keeps the whole process in the namespace, as a real ringlay is:
/// every thread, `/proc/net`, and `getifaddrs` see it, with no `setns` per thread.
fn in_netns(test_name: &str, body: impl FnOnce(&str)) {
    if let Ok(ns) = env::var(CHILD_ENV) {
        body(&ns);
        return;
    }
    if !privileged(test_name) {
        return;
    }
    let ns = Netns::create();
    let exe = env::current_exe().expect("path of this test binary");
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.name])
        .arg(exe)
        .args(["--exact", test_name, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &ns.name)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the test inside the namespace");
    let collect = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = collect(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = collect(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + CHILD_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let stdout = stdout.join().expect("stdout reader");
    let stderr = stderr.join().expect("stderr reader");
    println!("--- {test_name} in {} ---\n{stdout}{stderr}", ns.name);
    let status = status.unwrap_or_else(|| panic!("{test_name} timed out in {}", ns.name));
    assert!(status.success(), "{test_name} failed in {}", ns.name);
    assert!(
        stdout.contains("test result: ok. 1 passed"),
        "{test_name} did not run exactly one test in {}",
        ns.name
    );
}

/// `/proc/net/route` holds `dest/prefix` on `iface` (addresses are printed as the
/// hex of their in-memory, i.e. network-order, bytes read as a little-endian int).
fn proc_route_has(iface: &str, dest: Ipv4Addr, prefix_len: u8) -> bool {
    let hex = |a: Ipv4Addr| format!("{:08X}", u32::from_le_bytes(a.octets()));
    let mask = Ipv4Addr::from(
        u32::MAX
            .checked_shl(32 - u32::from(prefix_len))
            .unwrap_or(0),
    );
    let text = std::fs::read_to_string("/proc/net/route").expect("read /proc/net/route");
    text.lines().any(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        f.len() > 7 && f[0] == iface && f[1] == hex(dest) && f[7] == hex(mask)
    })
}

#[test]
fn tun_configured_like_flannel() {
    in_netns("tun_configured_like_flannel", |ns| {
        let tun = Tun::create("rltest0", 2, false).expect("2-queue tun");
        assert_eq!(tun.name(), "rltest0");
        assert_eq!(tun.queues().len(), 2);
        assert!(tun.multi_queue() && !tun.vnet_hdr());
        assert!(netdev::index("rltest0").expect("ifindex") > 0);

        netdev::set_mtu("rltest0", 1400).expect("set mtu");
        assert_eq!(netdev::mtu("rltest0").expect("mtu"), 1400);

        // flannel: the lease's .0 address with the cluster network's prefix.
        let lease = Ipv4Addr::new(100, 96, 1, 0);
        netdev::set_ipv4("rltest0", lease, 16).expect("set ipv4");
        netdev::set_up("rltest0").expect("set up");
        let up = libc::IFF_UP as u32;
        assert_eq!(netdev::flags("rltest0").expect("flags") & up, up);
        assert_eq!(netdev::ipv4_addrs("rltest0").expect("addrs"), [(lease, 16)]);
        assert_eq!(
            netdev::iface_with_ipv4(lease)
                .expect("getifaddrs")
                .as_deref(),
            Some("rltest0")
        );
        assert_eq!(
            netdev::iface_with_ipv4(Ipv4Addr::new(100, 96, 9, 9)).expect("getifaddrs"),
            None
        );

        // The connected route covers the whole cluster network, seen by the
        // kernel's table and by iproute2.
        assert!(proc_route_has("rltest0", Ipv4Addr::new(100, 96, 0, 0), 16));
        let routes = ip(&["-n", ns, "-4", "route", "show", "dev", "rltest0"]);
        assert!(routes.contains("100.96.0.0/16"), "{routes}");

        // A fresh namespace has no default route; then one through the tun.
        assert_eq!(netdev::default_route_iface().expect("route table"), None);
        ip(&["route", "add", "default", "dev", "rltest0"]);
        assert_eq!(
            netdev::default_route_iface()
                .expect("route table")
                .as_deref(),
            Some("rltest0")
        );

        let v6: Ipv6Addr = "2001:db8:1::1".parse().expect("literal");
        netdev::add_ipv6("rltest0", v6, 64).expect("add ipv6");
        assert!(netdev::ipv6_addrs("rltest0")
            .expect("addrs")
            .contains(&(v6, 64)));
        let again = netdev::add_ipv6("rltest0", v6, 64).expect_err("duplicate address");
        assert_eq!(raw_os_error(&again), Some(libc::EEXIST), "{again}");

        drop(tun);
        let gone = netdev::index("rltest0").expect_err("the device goes with its fds");
        assert_eq!(gone.kind(), io::ErrorKind::NotFound, "{gone}");
        assert_eq!(
            netdev::mtu("rltest0").expect_err("gone").kind(),
            io::ErrorKind::NotFound
        );
    });
}

#[test]
fn tun_queue_carries_routed_packets() {
    in_netns("tun_queue_carries_routed_packets", |_| {
        let tun = Tun::create("rltest0", 1, false).expect("1-queue tun");
        assert!(!tun.multi_queue());
        netdev::set_ipv4("rltest0", Ipv4Addr::new(100, 96, 1, 0), 16).expect("set ipv4");
        netdev::set_up("rltest0").expect("set up");

        let dst = Ipv4Addr::new(100, 96, 2, 5);
        let sender = UdpSocket::bind("100.96.1.0:0").expect("bind on the tun's address");
        sender
            .send_to(b"overlay", (dst, 9))
            .expect("send into the overlay");

        // Blocking read; the kernel may queue IPv6 housekeeping packets first.
        let mut queue = std::fs::File::from(tun.into_queues().remove(0));
        let mut buf = [0u8; 2048];
        loop {
            let n = queue.read(&mut buf).expect("read the tun queue");
            let packet = &buf[..n];
            if packet.first().map(|b| b >> 4) == Some(4) {
                assert_eq!(&packet[16..20], &dst.octets(), "IPv4 destination");
                assert_eq!(packet[9], libc::IPPROTO_UDP as u8);
                assert!(packet.ends_with(b"overlay"));
                break;
            }
        }
    });
}

#[test]
fn tun_refuses_what_it_must() {
    in_netns("tun_refuses_what_it_must", |_| {
        // Another kind of device holds the name: every namespace has a loopback.
        let err = Tun::create("lo", 1, false).expect_err("name of the loopback");
        assert_eq!(raw_os_error(&err), Some(libc::EBUSY), "{err}");
        assert!(err.to_string().contains("TUNSETIFF lo"), "{err}");
        assert!(err.to_string().contains("already exists"), "{err}");

        // Another tun holds the name: never adopt it, single- or multi-queue.
        let held = Tun::create("rltest1", 2, false).expect("2-queue tun");
        for queues in [1, 2] {
            let err = Tun::create("rltest1", queues, false).expect_err("name taken");
            assert_eq!(raw_os_error(&err), Some(libc::EBUSY), "{err}");
        }
        assert_eq!(held.queues().len(), 2);

        let err = Tun::create("rltest_name_too_long", 1, false).expect_err("16+ bytes");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("15"), "{err}");

        // A template: the kernel picks the number.
        let templ = Tun::create("rl%d", 1, false).expect("template name");
        assert!(templ.name().starts_with("rl") && !templ.name().contains('%'));
        assert!(netdev::index(templ.name()).is_ok());
    });
}

#[test]
fn tun_vnet_hdr_and_offloads() {
    in_netns("tun_vnet_hdr_and_offloads", |_| {
        let supported = tun::supported_flags().expect("TUNGETFEATURES");
        assert_ne!(supported & tun::IFF_MULTI_QUEUE, 0);
        assert_ne!(supported & tun::IFF_VNET_HDR, 0);

        let t = Tun::create("rltest2", 2, true).expect("vnet_hdr tun");
        assert!(t.vnet_hdr());
        let q0 = t.queues()[0].as_fd();
        tun::set_vnet_hdr_len(q0, 12).expect("virtio_net_hdr_mrg_rxbuf length");
        let err = tun::set_vnet_hdr_len(q0, 4).expect_err("shorter than virtio_net_hdr");
        assert_eq!(raw_os_error(&err), Some(libc::EINVAL));
        tun::set_offload(q0, tun::TUN_F_CSUM | tun::TUN_F_TSO4 | tun::TUN_F_TSO6)
            .expect("TSO offloads");
        // USO is Linux 6.2+; the testbed runs 6.18.
        tun::set_offload(
            q0,
            tun::TUN_F_CSUM | tun::TUN_F_TSO4 | tun::TUN_F_TSO6 | tun::TUN_F_USO4 | tun::TUN_F_USO6,
        )
        .expect("USO offloads");

        // The device lives as long as any queue.
        let mut queues = t.into_queues();
        assert_eq!(queues.len(), 2);
        drop(queues.pop());
        assert!(netdev::index("rltest2").is_ok());
        drop(queues);
        assert!(netdev::index("rltest2").is_err());
    });
}

#[test]
fn udp_reuseport_group_steered_by_cpu() {
    in_netns("udp_reuseport_group_steered_by_cpu", |_| {
        ip(&["link", "set", "lo", "up"]);
        ip(&["addr", "add", "192.0.2.1/24", "dev", "lo"]);
        ip(&["addr", "add", "2001:db8::1/128", "dev", "lo", "nodad"]);

        let bind: SocketAddr = "192.0.2.1:8472".parse().expect("literal");
        let buf = 4 << 20;
        let group: Vec<UdpSocket> = (0..2)
            .map(|_| socket::udp_socket(bind, true, buf).expect("reuseport socket"))
            .collect();
        // Forced past rmem_max as root; the kernel reports double the value set.
        assert!(socket::recv_buffer_size(&group[0]).expect("SO_RCVBUF") >= 2 * buf);
        // A socket without SO_REUSEADDR/SO_REUSEPORT cannot take the port over.
        let err = UdpSocket::bind(bind).expect_err("port held by the group");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        socket::attach_reuseport_cpu_steering(&group[0], 2).expect("cpu steering");
        socket::set_udp_gro(&group[0], true).expect("UDP_GRO");

        let v6: SocketAddr = "[2001:db8::1]:8472".parse().expect("literal");
        let v6 = socket::udp_socket(v6, true, 0).expect("ipv6 socket");
        socket::set_udp_segment(&v6, 1400).expect("UDP_SEGMENT");

        // On loopback the receive runs on the sending CPU: a datagram sent from
        // CPU c must land in socket c % 2.
        for s in &group {
            s.set_nonblocking(true).expect("nonblocking for the check");
        }
        for c in cpu::allowed_cpus().expect("allowed cpus") {
            thread::spawn(move || {
                cpu::pin_current_thread(c).expect("pin sender");
                let from = UdpSocket::bind("192.0.2.1:0").expect("sender");
                from.send_to(&c.to_be_bytes(), bind).expect("send");
            })
            .join()
            .expect("sender thread");
            let mut got = [0u8; 16];
            let want = &group[c % 2];
            let deadline = Instant::now() + Duration::from_secs(5);
            let n = loop {
                match want.recv(&mut got) {
                    Ok(n) => break n,
                    Err(e)
                        if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline =>
                    {
                        thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => panic!("socket {} got nothing from cpu {c}: {e}", c % 2),
                }
            };
            assert_eq!(&got[..n], &c.to_be_bytes());
            let other = group[(c + 1) % 2].recv(&mut got);
            assert!(
                other.is_err(),
                "the other socket received cpu {c}'s datagram"
            );
        }
    });
}

/// A gathered send puts pieces from anywhere in its slot on the wire as one
/// buffer, and with a segment size the kernel cuts that buffer into datagrams:
/// headers written apart from the payloads arrive in front of them. The same
/// over IPv4, IPv6, and from a dual-stack socket to an IPv4-mapped address;
/// and a receive through the ring reports each sender's address.
#[test]
fn uring_gathered_send_is_cut_at_the_segment_size() {
    in_netns("uring_gathered_send_is_cut_at_the_segment_size", |_| {
        ip(&["link", "set", "lo", "up"]);
        let cases = [
            (
                "127.0.0.1:0",
                UdpSocket::bind("127.0.0.1:0").expect("IPv4 sender"),
                false,
            ),
            (
                "[::1]:0",
                UdpSocket::bind("[::1]:0").expect("IPv6 sender"),
                false,
            ),
            (
                "127.0.0.1:0",
                socket::dual_stack_udp_socket(0, false, 0).expect("dual-stack sender"),
                true,
            ),
        ];
        for (bind, tx, mapped) in cases {
            let rx = UdpSocket::bind(bind).expect("receiver");
            rx.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            let dest = sockaddr::for_socket(rx.local_addr().expect("address"), mapped);
            gathered_send_arrives_cut(&tx, &rx, dest);
            ring_receive_reports_the_sender(&rx, &tx);
        }
    });
}

fn gathered_send_arrives_cut(tx: &UdpSocket, rx: &UdpSocket, dest: SocketAddr) {
    let mut ring = Ring::new(8, 1, 4096).expect("ring");
    // Payloads at the start of the slot, headers near its end.
    let buf = ring.buf_mut(0);
    buf[..12].copy_from_slice(b"aaaaaabbbbbb");
    buf[3000..3008].copy_from_slice(b"HDR1HDR2");
    let pieces = [3000..3004, 0..6, 3004..3008, 6..12];
    ring.send_gather(tx.as_raw_fd(), 0, &pieces, dest, Some(10), 1)
        .expect("queue the send");
    // A piece outside the slot is refused before anything is queued.
    let outside = ring.send_gather(
        tx.as_raw_fd(),
        0,
        std::slice::from_ref(&(0..4097)),
        dest,
        None,
        1,
    );
    assert!(outside.is_err());
    ring.submit_and_wait(1).expect("submit");
    let mut done = Vec::new();
    ring.reap(&mut done);
    assert_eq!(done.len(), 1, "{done:?}");
    assert_eq!(done[0].result, 20, "both datagrams' bytes sent to {dest}");
    let mut got = [0u8; 64];
    let n = rx.recv(&mut got).expect("first datagram");
    assert_eq!(&got[..n], b"HDR1aaaaaa");
    let n = rx.recv(&mut got).expect("second datagram");
    assert_eq!(&got[..n], b"HDR2bbbbbb");
    let _ = ring.buf(0);
}

/// `rx` receives through a ring, once into a slot and once into a provided
/// buffer, a datagram from `tx`: both report `tx`'s address.
fn ring_receive_reports_the_sender(rx: &UdpSocket, tx: &UdpSocket) {
    let to = rx.local_addr().expect("address");
    let from = tx.local_addr().expect("address");
    // A dual-stack sender's address is its IPv4 one to an IPv4 receiver.
    let from = SocketAddr::new(
        if to.is_ipv4() {
            Ipv4Addr::LOCALHOST.into()
        } else {
            from.ip()
        },
        from.port(),
    );
    let mut ring = Ring::new(8, 1, 4096).expect("ring");
    ring.recv_from(rx.as_raw_fd(), 0, 0, 1).expect("recv");
    tx.send_to(b"one", to).expect("send");
    ring.submit_and_wait(1).expect("submit");
    let mut done = Vec::new();
    ring.reap(&mut done);
    assert_eq!(done[0].result, 3);
    assert_eq!(ring.source(0), Some(from), "the slot receive's sender");

    ring.enable_recv_ring(2, 256).expect("buffer ring");
    ring.recv_multi(rx.as_raw_fd(), 2).expect("recv_multi");
    tx.send_to(b"two", to).expect("send");
    done.clear();
    while done.is_empty() {
        ring.submit_and_wait(1).expect("submit");
        ring.reap(&mut done);
    }
    let bid = done[0].buffer.expect("a provided buffer");
    let d = ring.received(bid, done[0].result as usize).expect("parsed");
    assert_eq!((d.source, d.payload), (Some(from), &b"two"[..]));
}

#[test]
fn eventfd_counts_notifications() {
    let efd = EventFd::new().expect("eventfd");
    for _ in 0..3 {
        efd.notify().expect("notify");
    }
    assert_eq!(efd.read().expect("read"), 3);
}
