//! Capabilities (capabilities(7)): reading them, so that a missing privilege is
//! reported up front rather than as an `EPERM` from the first ioctl, and giving
//! up the ones the running daemon no longer needs.
//!
//! Linux keeps capabilities per *thread*: `capset(2)`, `PR_CAPBSET_DROP`, the
//! ambient set and `PR_SET_NO_NEW_PRIVS` all act on the calling thread only, and
//! a new thread starts with a copy of its creator's. [`restrict_thread`] therefore
//! reduces the thread that calls it; the daemon calls it in every thread it runs
//! (see `daemon`), and [`threads_exceeding`] reads `/proc/self/task/*/status` to
//! check that no thread of the process kept more.
//!
//! The three system calls (`capget`, `capset`, `prctl`) are written here rather
//! than taken from the `caps` or `capctl` crates. Both act per thread as this
//! module needs (pid 0 in the capget/capset header), but neither would remove
//! more than these three small blocks: `caps` has no `PR_SET_NO_NEW_PRIVS`, so a
//! `prctl` block would stay, and `capctl` would bring a second major version of
//! `bitflags` into the tree. The 64-bit [`CapSet`] mask and the
//! `/proc/self/task/*/status` check, which is what proves every thread gave its
//! capabilities up, would stay ours with either crate.

use std::fmt;
use std::fs;
use std::io;

use super::error::{context, cvt};

/// The `CAP_NET_ADMIN` bit (include/uapi/linux/capability.h): creating TUN
/// devices, configuring interfaces and routes, nftables, forcing socket buffer
/// sizes.
pub const CAP_NET_ADMIN: u32 = 12;

/// `_LINUX_CAPABILITY_VERSION_3` (include/uapi/linux/capability.h): 64-bit sets,
/// passed as two 32-bit halves.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// The capabilities' names, by bit (include/uapi/linux/capability.h).
const NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// A set of capabilities, as the kernel's 64-bit mask (bit `n` is capability `n`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CapSet(pub u64);

impl CapSet {
    /// No capability.
    pub const EMPTY: CapSet = CapSet(0);

    /// The set holding only `bit`.
    pub const fn only(bit: u32) -> CapSet {
        CapSet(1 << bit)
    }

    /// Whether `bit` is in the set.
    pub fn has(self, bit: u32) -> bool {
        bit < 64 && self.0 & (1 << bit) != 0
    }

    /// Whether every capability of `self` is in `other`.
    pub fn is_subset(self, other: CapSet) -> bool {
        self.0 & !other.0 == 0
    }

    /// The capabilities in both sets.
    pub fn intersect(self, other: CapSet) -> CapSet {
        CapSet(self.0 & other.0)
    }

    /// The bits of the set, lowest first.
    pub fn bits(self) -> impl Iterator<Item = u32> {
        (0..64).filter(move |&b| self.has(b))
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// `CAP_NET_ADMIN, CAP_NET_RAW`, or `none`; an unknown bit as `cap_<n>`.
impl fmt::Display for CapSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        for (i, b) in self.bits().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            match NAMES.get(b as usize) {
                Some(name) => f.write_str(name)?,
                None => write!(f, "cap_{b}")?,
            }
        }
        Ok(())
    }
}

/// The capabilities of one thread, as `/proc/<pid>/task/<tid>/status` shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskCaps {
    /// `CapInh`.
    pub inheritable: CapSet,
    /// `CapPrm`.
    pub permitted: CapSet,
    /// `CapEff`.
    pub effective: CapSet,
    /// `CapBnd`.
    pub bounding: CapSet,
    /// `CapAmb`.
    pub ambient: CapSet,
    /// `NoNewPrivs`.
    pub no_new_privs: bool,
}

impl TaskCaps {
    /// The capability lines of a `status` file (proc(5)); `None` if one of them
    /// is missing or not hexadecimal (`CapAmb` and `NoNewPrivs` count as 0 when
    /// absent, as on kernels before 4.3 and 4.10).
    pub fn parse(status: &str) -> Option<TaskCaps> {
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        let set = |name: &str| {
            field(name)
                .and_then(|v| u64::from_str_radix(v, 16).ok())
                .map(CapSet)
        };
        Some(TaskCaps {
            inheritable: set("CapInh")?,
            permitted: set("CapPrm")?,
            effective: set("CapEff")?,
            bounding: set("CapBnd")?,
            ambient: match field("CapAmb") {
                Some(_) => set("CapAmb")?,
                None => CapSet::EMPTY,
            },
            no_new_privs: field("NoNewPrivs") == Some("1"),
        })
    }

    /// Whether the thread holds no more than `keep` (effective, permitted,
    /// inheritable and ambient), no more than `bounding` in its bounding set, and
    /// has `no_new_privs` set.
    pub fn within(&self, keep: CapSet, bounding: CapSet) -> bool {
        let held =
            CapSet(self.effective.0 | self.permitted.0 | self.inheritable.0 | self.ambient.0);
        held.is_subset(keep) && self.bounding.is_subset(bounding) && self.no_new_privs
    }
}

/// The effective capability set in the text of `/proc/<pid>/status`: the hex
/// value of its `CapEff:` line, or `None` if there is no well-formed one.
pub fn parse_cap_eff(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|value| u64::from_str_radix(value.trim(), 16).ok())
}

/// Whether this process has capability `bit` in its effective set. `false` if
/// the set cannot be read.
pub fn has_capability(bit: u32) -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .as_deref()
        .and_then(parse_cap_eff)
        .is_some_and(|caps| bit < 64 && caps & (1 << bit) != 0)
}

/// Whether this process may create TUN devices and configure interfaces.
pub fn has_cap_net_admin() -> bool {
    has_capability(CAP_NET_ADMIN)
}

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`: one 32-bit half of each set.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// The calling thread's effective, permitted and inheritable sets (`capget(2)`).
fn capget() -> io::Result<[CapData; 2]> {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: version 3 writes two `CapData` structs through the second pointer;
    // both pointers point to locals of the right layout (`repr(C)`), live for the
    // whole call. pid 0 is the calling thread.
    cvt(unsafe { libc::syscall(libc::SYS_capget, &raw mut header, data.as_mut_ptr()) })
        .map_err(|e| context(e, "capget"))?;
    Ok(data)
}

/// Sets the calling thread's effective, permitted and inheritable sets
/// (`capset(2)`); the kernel refuses any set larger than it may be.
fn capset(effective: CapSet, permitted: CapSet, inheritable: CapSet) -> io::Result<()> {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let half = |s: CapSet, hi: bool| (if hi { s.0 >> 32 } else { s.0 }) as u32;
    let data = [false, true].map(|hi| CapData {
        effective: half(effective, hi),
        permitted: half(permitted, hi),
        inheritable: half(inheritable, hi),
    });
    // SAFETY: version 3 reads one header and two `CapData` structs through the
    // pointers, which point to locals of the right layout, live for the whole call.
    cvt(unsafe { libc::syscall(libc::SYS_capset, &raw mut header, data.as_ptr()) })
        .map_err(|e| context(e, "capset"))?;
    Ok(())
}

/// `prctl(option, arg2, arg3, 0, 0)`.
fn prctl(option: libc::c_int, arg2: libc::c_ulong, arg3: libc::c_ulong) -> io::Result<libc::c_int> {
    // SAFETY: the options used here (PR_CAPBSET_*, PR_CAP_AMBIENT,
    // PR_*_NO_NEW_PRIVS) take integers only, no pointer.
    cvt(unsafe { libc::prctl(option, arg2, arg3, 0 as libc::c_ulong, 0 as libc::c_ulong) })
}

/// The capabilities this kernel knows (`PR_CAPBSET_READ` refuses the others).
fn known() -> CapSet {
    let mut all = 0u64;
    for bit in 0..64u32 {
        if prctl(libc::PR_CAPBSET_READ, libc::c_ulong::from(bit), 0).is_err() {
            break;
        }
        all |= 1 << bit;
    }
    CapSet(all)
}

/// The calling thread's bounding set.
fn bounding() -> CapSet {
    CapSet(
        known()
            .bits()
            .filter(|&b| prctl(libc::PR_CAPBSET_READ, libc::c_ulong::from(b), 0).ok() == Some(1))
            .fold(0, |m, b| m | 1 << b),
    )
}

/// What [`restrict_thread`] left the calling thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restricted {
    /// Its permitted (and effective) set: what it kept of `keep`.
    pub permitted: CapSet,
    /// Its bounding set. Only `keep` unless the thread lacked `CAP_SETPCAP`,
    /// which removing from the bounding set requires (as under a service manager
    /// that already narrowed the bounding set); `no_new_privs` keeps the rest
    /// out of reach: an `execve` can no longer gain what the thread does not have.
    pub bounding: CapSet,
}

/// Reduces the calling thread (only it: capabilities are per thread) to the
/// capabilities in `keep`: removes every other one from its bounding, ambient,
/// inheritable, permitted and effective sets, then sets `no_new_privs`, so that
/// nothing it or a program it runs does can gain them back.
///
/// The bounding set goes first, while `CAP_SETPCAP` may still be held; without
/// it the bounding set stays as it is (see [`Restricted::bounding`]). A
/// capability in `keep` stays in the inheritable and ambient sets only if it
/// was there: a program run by a non-root daemon with ambient capabilities
/// (`nft`, for `--ip-masq`) still gets it.
pub fn restrict_thread(keep: CapSet) -> io::Result<Restricted> {
    for bit in bounding().bits().filter(|&b| !keep.has(b)) {
        match prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(bit), 0) {
            Ok(_) => {}
            // No CAP_SETPCAP: the bounding set stays; no_new_privs covers it.
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => break,
            Err(e) => return Err(context(e, format!("PR_CAPBSET_DROP {bit}"))),
        }
    }
    for bit in known().bits().filter(|&b| !keep.has(b)) {
        let lower = libc::PR_CAP_AMBIENT_LOWER as libc::c_ulong;
        match prctl(libc::PR_CAP_AMBIENT, lower, libc::c_ulong::from(bit)) {
            Ok(_) => {}
            // Kernels before 4.3 have no ambient set.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => break,
            Err(e) => return Err(context(e, format!("PR_CAP_AMBIENT_LOWER {bit}"))),
        }
    }
    let now = capget()?;
    let whole =
        |f: fn(&CapData) -> u32| CapSet(u64::from(f(&now[0])) | u64::from(f(&now[1])) << 32);
    let permitted = whole(|d| d.permitted).intersect(keep);
    let inheritable = whole(|d| d.inheritable).intersect(keep);
    capset(permitted, permitted, inheritable)?;
    prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0).map_err(|e| context(e, "PR_SET_NO_NEW_PRIVS"))?;
    Ok(Restricted {
        permitted,
        bounding: bounding(),
    })
}

/// One thread of this process that holds more than it should.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exceeding {
    /// Its thread id.
    pub tid: u32,
    /// Its name (`comm`).
    pub name: String,
    /// What it holds.
    pub caps: TaskCaps,
}

/// The threads of this process whose capabilities are not within `keep` and
/// `bounding` with `no_new_privs` set (see [`TaskCaps::within`]). A thread that
/// exits while being read is skipped.
pub fn threads_exceeding(keep: CapSet, bounding: CapSet) -> io::Result<Vec<Exceeding>> {
    let mut out = Vec::new();
    let tasks =
        fs::read_dir("/proc/self/task").map_err(|e| context(e, "reading /proc/self/task"))?;
    for entry in tasks {
        let entry = entry.map_err(|e| context(e, "reading /proc/self/task"))?;
        let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let Ok(status) = fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let caps = TaskCaps::parse(&status).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("/proc/self/task/{tid}/status: no capability lines"),
            )
        })?;
        if !caps.within(keep, bounding) {
            let name = status
                .lines()
                .find_map(|l| l.strip_prefix("Name:"))
                .unwrap_or("")
                .trim()
                .to_owned();
            out.push(Exceeding { tid, name, caps });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_unprivileged_status() {
        let root = "Name:\tringlay\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\n\
                    CapEff:\t000001ffffffffff\nCapBnd:\t000001ffffffffff\n";
        let caps = parse_cap_eff(root).expect("CapEff line");
        assert_eq!(caps, 0x01ff_ffff_ffff);
        assert_ne!(caps & (1 << CAP_NET_ADMIN), 0);

        let user = "Name:\tringlay\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n";
        assert_eq!(parse_cap_eff(user), Some(0));

        // Only CAP_NET_ADMIN (e.g. granted by setcap or a container runtime).
        let net_admin = "CapEff:\t0000000000001000\n";
        assert_eq!(parse_cap_eff(net_admin), Some(1 << CAP_NET_ADMIN));
    }

    #[test]
    fn malformed_status() {
        assert_eq!(parse_cap_eff(""), None);
        assert_eq!(parse_cap_eff("CapPrm:\t0000000000001000\n"), None);
        assert_eq!(parse_cap_eff("CapEff:\tnot-hex\n"), None);
        assert_eq!(parse_cap_eff("CapEff:\n"), None);
        assert_eq!(TaskCaps::parse("CapEff:\t0\n"), None);
        let bad = "CapInh:\t0\nCapPrm:\t0\nCapEff:\tzz\nCapBnd:\t0\n";
        assert_eq!(TaskCaps::parse(bad), None);
    }

    #[test]
    fn reads_this_process() {
        // Whatever the answer, reading it must not panic; root has the bit.
        let _ = has_cap_net_admin();
        assert!(!has_capability(64));
    }

    #[test]
    fn task_status_lines() {
        let status = "Name:\tringlay-w0\nNoNewPrivs:\t1\nCapInh:\t0000000000000000\n\
                      CapPrm:\t0000000000001000\nCapEff:\t0000000000001000\n\
                      CapBnd:\t0000000000001000\nCapAmb:\t0000000000000000\n";
        let t = TaskCaps::parse(status).expect("well formed");
        let admin = CapSet::only(CAP_NET_ADMIN);
        assert_eq!(t.effective, admin);
        assert_eq!(t.bounding, admin);
        assert!(t.no_new_privs);
        assert!(t.within(admin, admin));
        assert!(!t.within(CapSet::EMPTY, admin));
        assert!(!t.within(admin, CapSet::EMPTY));
        let without_nnp = status.replace("NoNewPrivs:\t1", "NoNewPrivs:\t0");
        let t = TaskCaps::parse(&without_nnp).expect("well formed");
        assert!(!t.within(admin, admin));
        // Old kernels: no CapAmb, no NoNewPrivs.
        let old = "CapInh:\t0\nCapPrm:\t0\nCapEff:\t0\nCapBnd:\t3fffffffff\n";
        let t = TaskCaps::parse(old).expect("well formed");
        assert_eq!(t.ambient, CapSet::EMPTY);
        assert!(!t.no_new_privs);
    }

    #[test]
    fn names() {
        assert_eq!(CapSet::EMPTY.to_string(), "none");
        assert_eq!(CapSet::only(CAP_NET_ADMIN).to_string(), "CAP_NET_ADMIN");
        let two = CapSet(1 << 10 | 1 << 12);
        assert_eq!(two.to_string(), "CAP_NET_BIND_SERVICE, CAP_NET_ADMIN");
        assert_eq!(CapSet(1 << 45).to_string(), "cap_45");
        assert_eq!(NAMES[CAP_NET_ADMIN as usize], "CAP_NET_ADMIN");
    }

    #[test]
    fn a_thread_gives_up_all_but_one() {
        // Only the spawned thread is reduced: the test process keeps its own.
        let before = capget().expect("capget");
        let had_admin = before[0].permitted & (1 << CAP_NET_ADMIN) != 0;
        let keep = CapSet::only(CAP_NET_ADMIN);
        let r = std::thread::spawn(move || {
            let r = restrict_thread(keep).expect("restricting a thread never needs privilege");
            let status = fs::read_to_string(format!(
                "/proc/self/task/{}/status",
                // SAFETY: gettid has no arguments and cannot fail.
                unsafe { libc::gettid() }
            ))
            .expect("own status");
            (r, TaskCaps::parse(&status).expect("well formed"))
        })
        .join()
        .expect("thread");
        let (r, t) = r;
        assert!(t.no_new_privs);
        assert!(r.permitted.is_subset(keep));
        assert_eq!(r.permitted.has(CAP_NET_ADMIN), had_admin);
        assert!(t.within(keep, r.bounding));
        assert_eq!(t.effective, r.permitted);
        // This thread is untouched.
        let now = capget().expect("capget");
        assert_eq!(now[0].permitted, before[0].permitted);
    }
}
