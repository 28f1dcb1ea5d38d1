//! Feeds arbitrary bytes to the virtio-net header view (as if read from a TUN
//! device with `IFF_VNET_HDR`): parsing and validation must not panic, a header
//! that validates must describe offsets inside the packet, and emitting the parsed
//! header must give back the same ten bytes.

use crate::wire::virtio::{self, GsoType, Header, Repr};

/// Runs the target on one input; it panics (a failed check) only on a bug.
pub fn run(data: &[u8]) {
    let Ok(header) = Header::new_checked(data) else {
        return;
    };
    let repr = Repr::parse(&header).expect("parse accepts every checked header");
    let packet_len = data.len() - virtio::HEADER_LEN;
    assert_eq!(header.payload().len(), packet_len);
    if repr.validate(packet_len).is_ok() {
        if repr.needs_csum() {
            let end = usize::from(repr.csum_start) + usize::from(repr.csum_offset) + 2;
            assert!(end <= packet_len);
        }
        if repr.gso_type != GsoType::None {
            assert!(repr.gso_size > 0 && usize::from(repr.hdr_len) <= packet_len);
        }
    }
    if !matches!(repr.gso_type, GsoType::Unknown(_)) {
        let mut out = [0u8; virtio::HEADER_LEN];
        repr.emit(&mut Header::new_unchecked(&mut out[..]));
        assert_eq!(out[..], data[..virtio::HEADER_LEN]);
    }
}
