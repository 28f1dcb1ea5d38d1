//! Prefixes resolved into disjoint intervals: [`flatten`] turns a set of prefixes,
//! nested or not, into sorted `(start, answer)` pairs that cover the whole address
//! space, the form both lookup paths are built from. Nesting and duplicates are
//! resolved here, once, at build time: the longest prefix answers, and of two equal
//! prefixes the one inserted later.

use ipnet::{Ipv4Net, Ipv6Net};

use super::bits::Bits;
use super::bits::NONE;

/// One prefix as the inclusive address range it covers.
pub(super) struct Span<K> {
    pub(super) start: K,
    last: K,
    pub(super) len: u8,
    /// The peer index, also the tie-break: a higher index was inserted later.
    val: u32,
}

impl Span<u32> {
    pub(super) fn v4(n: Ipv4Net, val: u32) -> Span<u32> {
        Span {
            start: u32::from(n.network()),
            last: u32::from(n.broadcast()),
            len: n.prefix_len(),
            val,
        }
    }
}

impl Span<u128> {
    pub(super) fn v6(n: Ipv6Net, val: u32) -> Span<u128> {
        Span {
            start: u128::from(n.network()),
            last: u128::from(n.broadcast()),
            len: n.prefix_len(),
            val,
        }
    }
}

/// Resolves a set of prefixes into disjoint intervals covering the whole address
/// space: `(start, answer)` pairs, starts ascending from 0, where the answer holds
/// for every address up to the next start (`NONE` where nothing matches).
pub(super) fn flatten<K: Bits>(spans: &mut [Span<K>]) -> Vec<(K, u32)> {
    // By start, then outermost (longest range) first, so enclosing prefixes come
    // before the prefixes nested in them; equal prefixes by insertion order.
    spans.sort_unstable_by(|a, b| {
        a.start
            .cmp(&b.start)
            .then(b.last.cmp(&a.last))
            .then(a.val.cmp(&b.val))
    });
    let mut out = Intervals(vec![(K::default(), NONE)]);
    // The prefixes enclosing the current position, innermost last. Prefixes are
    // nested or disjoint, so a stack resolves them in one pass.
    let mut stack: Vec<(K, u32)> = Vec::new();
    let mut it = spans.iter().peekable();
    while let Some(s) = it.next() {
        if it
            .peek()
            .is_some_and(|n| n.start == s.start && n.last == s.last)
        {
            continue; // the same prefix again, inserted later: that one wins.
        }
        out.close(&mut stack, Some(s.start));
        out.emit(s.start, s.val);
        stack.push((s.last, s.val));
    }
    out.close(&mut stack, None);
    out.0
}

/// The intervals `flatten` is producing.
struct Intervals<K>(Vec<(K, u32)>);

impl<K: Bits> Intervals<K> {
    /// Pops the enclosing prefixes that end before `before` (all, for `None`); after
    /// each, the next enclosing prefix (or nothing) answers again.
    fn close(&mut self, stack: &mut Vec<(K, u32)>, before: Option<K>) {
        while let Some(&(last, _)) = stack.last() {
            if before.is_some_and(|b| last >= b) {
                break;
            }
            stack.pop();
            if let Some(resume) = last.next() {
                self.emit(resume, stack.last().map_or(NONE, |t| t.1));
            }
        }
    }

    /// Starts an interval answering `val` at `pos` (positions never decrease),
    /// coalescing neighbours with the same answer.
    fn emit(&mut self, pos: K, val: u32) {
        let v = &mut self.0;
        match v.last_mut() {
            Some(last) if last.0 == pos => {
                last.1 = val;
                let n = v.len();
                if n >= 2 && v[n - 2].1 == val {
                    v.pop();
                }
            }
            Some(last) if last.1 == val => {}
            _ => v.push((pos, val)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::fixtures::*;

    #[test]
    fn flatten_coalesces_and_covers_everything() {
        let mut spans = vec![
            Span::v4(net4("10.0.0.0/24"), 0),
            Span::v4(net4("10.0.1.0/24"), 0),
            Span::v4(net4("10.0.0.4/31"), 1),
            Span::v4(net4("10.0.0.4/31"), 2),
        ];
        let iv = flatten(&mut spans);
        let at = |s: &str| u32::from(v4(s));
        assert_eq!(
            iv,
            [
                (0, NONE),
                (at("10.0.0.0"), 0),
                (at("10.0.0.4"), 2),
                (at("10.0.0.6"), 0),
                (at("10.0.2.0"), NONE)
            ]
        );
        let iv = flatten(&mut [Span::v4(net4("0.0.0.0/0"), 0)]);
        assert_eq!(iv, [(0, 0)]);
        let iv = flatten(&mut [Span::v6(net6("::/0"), 3), Span::v6(net6("ffff::/16"), 4)]);
        assert_eq!(iv, [(0, 3), (0xffffu128 << 112, 4)]);
    }
}
