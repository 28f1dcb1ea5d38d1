//! The hasher of the snapshot's maps (public address → peer, and the builder's lease
//! key → position). Their keys come from etcd, which the cluster already trusts, so
//! a DoS-resistant (and slower) SipHash buys nothing.

use std::hash::{BuildHasherDefault, Hasher};

/// The hasher of the table's maps: FxHash-style multiply-rotate over words, with
/// the high half folded into the low half (the bucket index) at the end.
#[derive(Default, Clone, Copy)]
pub(super) struct FoldHasher(u64);

pub(super) type FoldState = BuildHasherDefault<FoldHasher>;

impl FoldHasher {
    #[inline]
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FoldHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(w));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    #[inline]
    fn write_u128(&mut self, i: u128) {
        self.add(i as u64);
        self.add((i >> 64) as u64);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 32)
    }
}
