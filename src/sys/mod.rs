//! The only module allowed `unsafe`: thin, documented wrappers over the Linux
//! interfaces the data path needs (TUN, links, addresses and kernel routes over
//! rtnetlink, sockets, io_uring, CPU affinity, capabilities). Everything returns `io::Result`; file descriptors are
//! `OwnedFd`s, closed by `Drop`, never by hand.
#![allow(unsafe_code)]

pub mod caps;
mod cmsg;
pub mod cpu;
pub mod error;
pub mod eventfd;
mod ifreq;
pub mod netdev;
pub mod netlink;
pub mod sockaddr;
pub mod socket;
pub mod tun;
pub mod uring;
