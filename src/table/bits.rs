//! The address widths the lookup structures are generic over, IPv4 as `u32` and
//! IPv6 as `u128`, with the shift and mask operations they are built from. Each
//! operation is defined for a shift by the full width (one block covering the
//! whole space) instead of overflowing.

/// Marks "no peer" in slots and interval answers (never a valid peer index).
pub(super) const NONE: u32 = u32::MAX;
/// Marks an index slot whose block is split by a longer prefix: ask the general path.
pub(super) const DEFER: u32 = u32::MAX - 1;

/// An address width the tables work over.
pub(super) trait Bits: Copy + Ord + Default {
    /// The width in bits.
    const BITS: u32;
    /// The address with all but the top `len` bits cleared.
    fn mask(self, len: u8) -> Self;
    /// `self - other`, wrapping.
    fn wrapping_sub(self, other: Self) -> Self;
    /// `self >> shift` as a slot number (`usize::MAX` if it does not fit).
    fn slot(self, shift: u32) -> usize;
    /// `self >> shift`, rounded up, as a bucket number (saturating).
    fn slot_ceil(self, shift: u32) -> usize;
    /// The first and last address of block `j` of size `2^shift` above `self`.
    fn block(self, j: usize, shift: u32) -> (Self, Self);
    /// How many top bits `self` and `other` share.
    fn common_prefix(self, other: Self) -> u32;
    /// `self + 1`, or `None` past the last address.
    fn next(self) -> Option<Self>;
}

impl Bits for u32 {
    const BITS: u32 = u32::BITS;
    fn mask(self, len: u8) -> u32 {
        self & u32::MAX
            .checked_shl(Self::BITS - u32::from(len))
            .unwrap_or(0)
    }
    #[inline]
    fn wrapping_sub(self, other: u32) -> u32 {
        u32::wrapping_sub(self, other)
    }
    #[inline]
    fn slot(self, shift: u32) -> usize {
        // In u64, so a shift of 32 (one slot for everything) is defined.
        usize::try_from(u64::from(self) >> shift).unwrap_or(usize::MAX)
    }
    fn slot_ceil(self, shift: u32) -> usize {
        usize::try_from(u64::from(self).div_ceil(1 << shift)).unwrap_or(usize::MAX)
    }
    fn block(self, j: usize, shift: u32) -> (u32, u32) {
        let j = u64::try_from(j).unwrap_or(u64::MAX);
        let lo = u64::from(self) + (j << shift);
        let hi = lo + ((1u64 << shift) - 1);
        (
            u32::try_from(lo).unwrap_or(u32::MAX),
            u32::try_from(hi).unwrap_or(u32::MAX),
        )
    }
    fn common_prefix(self, other: u32) -> u32 {
        (self ^ other).leading_zeros()
    }
    fn next(self) -> Option<u32> {
        self.checked_add(1)
    }
}

impl Bits for u128 {
    const BITS: u32 = u128::BITS;
    fn mask(self, len: u8) -> u128 {
        self & u128::MAX
            .checked_shl(Self::BITS - u32::from(len))
            .unwrap_or(0)
    }
    #[inline]
    fn wrapping_sub(self, other: u128) -> u128 {
        u128::wrapping_sub(self, other)
    }
    #[inline]
    fn slot(self, shift: u32) -> usize {
        usize::try_from(self.checked_shr(shift).unwrap_or(0)).unwrap_or(usize::MAX)
    }
    fn slot_ceil(self, shift: u32) -> usize {
        let low = u128::MAX.checked_shl(shift).map_or(u128::MAX, |m| !m);
        let up = u128::from(self & low != 0);
        usize::try_from(self.checked_shr(shift).unwrap_or(0) + up).unwrap_or(usize::MAX)
    }
    fn block(self, j: usize, shift: u32) -> (u128, u128) {
        // j < 2^20 and the block fits under self's network, so nothing overflows
        // except a shift of 128 (one block: the whole space, j == 0).
        let j = u128::try_from(j).unwrap_or(u128::MAX);
        let lo = self | j.checked_shl(shift).unwrap_or(0);
        let hi = lo | u128::MAX.checked_shl(shift).map_or(u128::MAX, |m| !m);
        (lo, hi)
    }
    fn common_prefix(self, other: u128) -> u32 {
        (self ^ other).leading_zeros()
    }
    fn next(self) -> Option<u128> {
        self.checked_add(1)
    }
}
