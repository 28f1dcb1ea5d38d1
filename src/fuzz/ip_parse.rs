//! Feeds arbitrary bytes to the IPv4 and IPv6 views (as if read from the TUN
//! device) and calls every accessor: none may panic once `new_checked` accepted
//! the buffer, and the bounds it reports must agree with the buffer.

use crate::wire::{ipv4, ipv6};

/// Runs the target on one input; it panics (a failed check) only on a bug.
pub fn run(data: &[u8]) {
    if let Ok(p) = ipv4::Packet::new_checked(data) {
        let _ = (
            p.version(),
            p.dscp_ecn(),
            p.ecn(),
            p.ident(),
            p.ttl(),
            p.protocol(),
        );
        let _ = (
            p.dont_frag(),
            p.more_frags(),
            p.frag_offset(),
            p.is_fragment(),
        );
        let _ = (
            p.checksum(),
            p.src_addr(),
            p.dst_addr(),
            p.verify_checksum(),
        );
        assert_eq!(p.version(), 4);
        assert!(p.header_len() >= ipv4::HEADER_LEN);
        assert_eq!(p.options().len(), p.header_len() - ipv4::HEADER_LEN);
        assert_eq!(
            p.payload().len(),
            usize::from(p.total_len()) - p.header_len()
        );
        let repr = ipv4::Repr::parse(&p).expect("parse accepts every checked packet");
        assert_eq!(repr.payload_len, p.payload().len());
    }
    if let Ok(p) = ipv6::Packet::new_checked(data) {
        let _ = (
            p.version(),
            p.traffic_class(),
            p.flow_label(),
            p.next_header(),
        );
        let _ = (p.hop_limit(), p.src_addr(), p.dst_addr());
        assert_eq!(p.version(), 6);
        assert_eq!(p.payload().len(), usize::from(p.payload_len()));
        if let Ok((_, offset)) = p.transport() {
            assert!(offset >= ipv6::HEADER_LEN);
            assert!(offset <= ipv6::HEADER_LEN + p.payload().len());
        }
        let repr = ipv6::Repr::parse(&p).expect("parse accepts every checked packet");
        assert_eq!(repr.payload_len, p.payload_len());
    }
}
