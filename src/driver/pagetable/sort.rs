//! Sorting of batch inputs by L1 table: a stable LSD radix sort, free when already sorted.

/// Stable LSD radix sort of `buf` by `key(x)`, which is below 2^`bits`, on 8-bit digits (256
/// output streams per pass: cache-friendly), with `tmp` as the other buffer. Free when sorted.
pub(super) fn radix_sort(
    buf: &mut Vec<u64>,
    tmp: &mut Vec<u64>,
    bits: u32,
    key: impl Fn(u64) -> u64,
) {
    if buf.windows(2).all(|w| key(w[0]) <= key(w[1])) {
        return;
    }
    if tmp.len() != buf.len() {
        tmp.clear();
        tmp.resize(buf.len(), 0);
    }
    let mut shift = 0;
    while shift < bits {
        let digit = |x: u64| ((key(x) >> shift) & 0xff) as usize;
        let mut pos = [0usize; 257];
        for &x in buf.iter() {
            pos[digit(x) + 1] += 1;
        }
        for i in 1..pos.len() {
            pos[i] += pos[i - 1];
        }
        for &x in buf.iter() {
            let p = &mut pos[digit(x)];
            if let Some(slot) = tmp.get_mut(*p) {
                *slot = x;
            }
            *p += 1;
        }
        std::mem::swap(buf, tmp);
        shift += 8;
    }
}

/// Smallest and largest L1-table number (IOVA >> 21) of `iovas`, and the bits their span needs.
pub(super) fn key_span(iovas: &[u64]) -> (u64, u32) {
    let (mut lo, mut hi) = (u64::MAX, 0u64);
    for &v in iovas {
        lo = lo.min(v >> 21);
        hi = hi.max(v >> 21);
    }
    (lo, 64 - hi.saturating_sub(lo).leading_zeros())
}

/// Stable sort of `items` by `key` (an L1-table number): free when already sorted, else an LSD
/// radix sort on 8-bit digits of `key - min` (cache-friendly: 256 output streams per pass), or a
/// comparison sort when the keys span more than 32 bits.
pub(super) fn sort_by_table<T: Copy>(items: Vec<T>, key: impl Fn(&T) -> u64) -> Vec<T> {
    if items.windows(2).all(|w| key(&w[0]) <= key(&w[1])) {
        return items;
    }
    let (mut lo, mut hi) = (u64::MAX, 0u64);
    for it in &items {
        let k = key(it);
        lo = lo.min(k);
        hi = hi.max(k);
    }
    let span_bits = 64 - (hi - lo).leading_zeros();
    if span_bits > 32 {
        let mut items = items;
        items.sort_by_key(key);
        return items;
    }
    let mut src = items;
    let mut dst = src.clone();
    let mut shift = 0;
    while shift < span_bits {
        let digit = |it: &T| (((key(it) - lo) >> shift) & 0xff) as usize;
        let mut pos = [0usize; 257];
        for it in &src {
            pos[digit(it) + 1] += 1;
        }
        for i in 1..pos.len() {
            pos[i] += pos[i - 1];
        }
        for it in &src {
            let p = &mut pos[digit(it)];
            if let Some(slot) = dst.get_mut(*p) {
                *slot = *it;
            }
            *p += 1;
        }
        std::mem::swap(&mut src, &mut dst);
        shift += 8;
    }
    src
}
