//! Dissecting pcap files with tshark, as an independent judge of the frames
//! ringlay and the kernel put on the wire.
//!
//! [`dissect`] turns checksum verification on for IPv4, UDP and TCP (tshark
//! leaves it off by default; ICMP and ICMPv6 checksums it always verifies),
//! applies the caller's decode-as rules (flannel's VXLAN port 8472 is not the
//! IANA 4789 that tshark knows) and reports per frame the protocol stack, the
//! expert infos, malformed-packet markers and bad checksums. A frame is
//! *clean* when it has none of these at warning level or above.

use std::env;
use std::fmt;
use std::io;
use std::path::Path;
use std::process::Command;

/// Preferences passed with `-o` on every run (names as `tshark -G defaultprefs`
/// lists them in tshark 4.0).
pub const PREFS: &[&str] = &[
    "ip.check_checksum:TRUE",
    "udp.check_checksum:TRUE",
    "tcp.check_checksum:TRUE",
];

/// Decode-as rule for flannel's VXLAN port.
pub const DECODE_VXLAN_8472: &str = "udp.port==8472,vxlan";
/// Decode-as rule for flannel's udp backend: the UDP payload is an IP packet.
pub const DECODE_FLANNEL_UDP_8285: &str = "udp.port==8285,ip";

/// Checksum status fields; tshark's `PROTO_CHECKSUM_E_BAD` prints as 0.
const CHECKSUM_STATUS_FIELDS: &[&str] = &[
    "ip.checksum.status",
    "udp.checksum.status",
    "tcp.checksum.status",
    "icmp.checksum.status",
    "icmpv6.checksum.status",
];
const CHECKSUM_BAD: &str = "0";

/// `PI_MALFORMED`, the expert group of malformed-packet exceptions.
pub const GROUP_MALFORMED: u32 = 0x0700_0000;

/// Separates the occurrences of one field (a byte no message contains).
const AGGREGATOR: char = '\u{1f}';

/// An expert info's severity (epan/proto.h `PI_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// `PI_COMMENT`
    Comment,
    /// `PI_CHAT`: normal protocol events (TCP SYN, FIN).
    Chat,
    /// `PI_NOTE`: unusual but legal (retransmission).
    Note,
    /// `PI_WARN`
    Warning,
    /// `PI_ERROR`: bad checksums and malformed packets.
    Error,
    /// Any other value.
    Unknown(u32),
}

impl Severity {
    fn from_raw(raw: u32) -> Self {
        match raw {
            0x0010_0000 => Self::Comment,
            0x0020_0000 => Self::Chat,
            0x0040_0000 => Self::Note,
            0x0060_0000 => Self::Warning,
            0x0080_0000 => Self::Error,
            other => Self::Unknown(other),
        }
    }

    /// Warnings, errors, and anything tshark added that this enum does not know.
    pub fn is_problem(self) -> bool {
        matches!(self, Self::Warning | Self::Error | Self::Unknown(_))
    }
}

/// One expert info tshark attached to a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expert {
    /// How bad it is.
    pub severity: Severity,
    /// The group (`PI_CHECKSUM` = 0x0100_0000, `PI_MALFORMED` = 0x0700_0000, ...).
    pub group: u32,
    /// tshark's message.
    pub message: String,
}

/// What tshark made of one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameDissection {
    /// 1-based frame number.
    pub number: u32,
    /// The protocol stack, e.g. `eth:ethertype:ip:udp:vxlan:eth:ethertype:ip:icmp:data`.
    pub protocols: String,
    /// Every expert info, whatever its severity.
    pub experts: Vec<Expert>,
    /// Checksum status fields that said "bad", e.g. `ip.checksum.status`.
    pub bad_checksums: Vec<String>,
    /// tshark marked the frame malformed (a dissector hit the end of the data
    /// or an impossible value). `frame.protocols` does not show this; the
    /// `_ws.malformed` field and the malformed expert group do.
    pub malformed: bool,
}

impl FrameDissection {
    /// Everything that makes the frame not clean, one line each.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.malformed {
            out.push("malformed packet".to_owned());
        }
        for field in &self.bad_checksums {
            out.push(format!("bad checksum ({field})"));
        }
        for e in self.experts.iter().filter(|e| e.severity.is_problem()) {
            out.push(format!("expert {:?}: {}", e.severity, e.message));
        }
        out
    }
}

/// tshark's view of a whole capture.
#[derive(Debug, Clone)]
pub struct Dissection {
    /// One entry per frame, in file order.
    pub frames: Vec<FrameDissection>,
    /// The `-V` output (every field of every frame), for failure messages.
    pub verbose: String,
    /// The command line of the fields run, for failure messages.
    pub command: String,
}

impl Dissection {
    /// `(frame number, problem)` for every problem in every frame.
    pub fn problems(&self) -> Vec<(u32, String)> {
        self.frames
            .iter()
            .flat_map(|f| f.problems().into_iter().map(move |p| (f.number, p)))
            .collect()
    }

    /// Panics, listing them, if any frame has a problem.
    pub fn assert_clean(&self) {
        let problems = self.problems();
        assert!(
            problems.is_empty(),
            "tshark found problems:\n{}\ncommand: {}\n--- tshark -V ---\n{}",
            problems
                .iter()
                .map(|(n, p)| format!("  frame {n}: {p}"))
                .collect::<Vec<_>>()
                .join("\n"),
            self.command,
            self.verbose
        );
    }
}

/// Why [`dissect`] could not run.
#[derive(Debug)]
pub struct Skip(pub String);

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// True when running under CI, where a missing tool is a failure, not a skip.
pub fn in_ci() -> bool {
    env::var("CI").is_ok_and(|v| v == "true")
}

/// The tshark binary: `$TSHARK` if set, else `tshark` from `PATH`.
fn tshark_bin() -> String {
    env::var("TSHARK").unwrap_or_else(|_| "tshark".to_owned())
}

/// The arguments of every run: input, no name resolution, prefs, decode-as.
fn base_args(pcap: &Path, decode_as: &[&str]) -> Vec<String> {
    let mut args = vec!["-r".to_owned(), pcap.display().to_string(), "-n".to_owned()];
    for d in decode_as {
        args.extend(["-d".to_owned(), (*d).to_owned()]);
    }
    for p in PREFS {
        args.extend(["-o".to_owned(), (*p).to_owned()]);
    }
    args
}

fn run(args: &[String]) -> Result<String, Skip> {
    let out = match Command::new(tshark_bin()).args(args).output() {
        Ok(out) => out,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Skip(format!("tshark not found ({})", tshark_bin())))
        }
        Err(e) => panic!("running tshark: {e}"),
    };
    assert!(
        out.status.success(),
        "tshark {} failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Dissects `pcap` with tshark (see the module docs), applying each
/// `decode_as` rule with `-d` (e.g. [`DECODE_VXLAN_8472`]).
///
/// Returns `Err(Skip)` with the reason when tshark is not installed, after
/// printing that reason; under CI (`CI=true`) panics instead. Panics if tshark
/// runs but fails (unreadable file, bad rule).
pub fn dissect(pcap: &Path, decode_as: &[&str]) -> Result<Dissection, Skip> {
    match dissect_inner(pcap, decode_as) {
        Ok(d) => Ok(d),
        Err(skip) if in_ci() => panic!("CI=true and {skip}"),
        Err(skip) => {
            eprintln!("skipping tshark checks: {skip}");
            Err(skip)
        }
    }
}

fn dissect_inner(pcap: &Path, decode_as: &[&str]) -> Result<Dissection, Skip> {
    let mut args = base_args(pcap, decode_as);
    args.extend(["-T", "fields", "-E", "separator=/t", "-E", "occurrence=a"].map(str::to_owned));
    args.extend(["-E".to_owned(), format!("aggregator={AGGREGATOR}")]);
    let fields = [
        "frame.number",
        "frame.protocols",
        "_ws.expert.severity",
        "_ws.expert.group",
        "_ws.expert.message",
        "_ws.malformed",
    ];
    for f in fields.iter().chain(CHECKSUM_STATUS_FIELDS) {
        args.extend(["-e".to_owned(), (*f).to_owned()]);
    }
    let table = run(&args)?;
    let frames = table
        .lines()
        .filter(|l| !l.is_empty())
        .map(parse_line)
        .collect();

    let mut verbose_args = base_args(pcap, decode_as);
    verbose_args.push("-V".to_owned());
    let verbose = run(&verbose_args)?;

    Ok(Dissection {
        frames,
        verbose,
        command: format!("{} {}", tshark_bin(), args.join(" ")),
    })
}

fn parse_line(line: &str) -> FrameDissection {
    let cols: Vec<&str> = line.split('\t').collect();
    let col = |i: usize| cols.get(i).copied().unwrap_or("");
    let list = |i: usize| -> Vec<&str> {
        let c = col(i);
        if c.is_empty() {
            Vec::new()
        } else {
            c.split(AGGREGATOR).collect()
        }
    };
    let number = col(0)
        .parse()
        .unwrap_or_else(|_| panic!("tshark fields line without a frame number: {line:?}"));
    let severities = list(2);
    let groups = list(3);
    let messages = list(4);
    let experts: Vec<Expert> = severities
        .iter()
        .enumerate()
        .map(|(i, s)| Expert {
            severity: Severity::from_raw(s.parse().unwrap_or(u32::MAX)),
            group: groups.get(i).and_then(|g| g.parse().ok()).unwrap_or(0),
            message: messages.get(i).copied().unwrap_or("").to_owned(),
        })
        .collect();
    let bad_checksums = CHECKSUM_STATUS_FIELDS
        .iter()
        .enumerate()
        .filter(|(i, _)| list(6 + i).contains(&CHECKSUM_BAD))
        .map(|(_, f)| (*f).to_owned())
        .collect();
    let malformed = !col(5).is_empty() || experts.iter().any(|e| e.group == GROUP_MALFORMED);
    FrameDissection {
        number,
        protocols: col(1).to_owned(),
        experts,
        bad_checksums,
        malformed,
    }
}
