//! Packing: copying a block of `A` or `B` into the panel order the
//! micro-kernel reads, zero-padded to whole tiles.

use super::{Operand, MAX_MR, MAX_NR};

/// Panels of either operand are at most this wide.
const MAX_WIDTH: usize = if MAX_MR > MAX_NR { MAX_MR } else { MAX_NR };

/// Makes `buf` hold at least `len` values, 64-byte aligned, and returns that
/// aligned part (grows once, then reused).
fn aligned(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    const ALIGN: usize = 16; // f32s in 64 bytes
    if buf.len() < len + ALIGN {
        buf.resize(len + ALIGN, 0.0);
    }
    let skip = buf.as_ptr().align_offset(64).min(ALIGN);
    &mut buf[skip..skip + len]
}

/// Packs the `mc×kc` block `a` as `⌈mc/mr⌉` panels, each `kc` columns of `mr`
/// consecutive values (rows past `mc` are zero).
pub(super) fn pack_a(buf: &mut Vec<f32>, a: Operand, mc: usize, kc: usize, mr: usize) -> &[f32] {
    let out = aligned(buf, mc.div_ceil(mr) * mr * kc);
    pack_a_into(out, a, mc, kc, mr);
    out
}

/// [`pack_a`] into `out`, which holds exactly `⌈mc/mr⌉·mr·kc` values.
pub(super) fn pack_a_into(out: &mut [f32], a: Operand, mc: usize, kc: usize, mr: usize) {
    for (t, panel) in out.chunks_exact_mut(mr * kc).enumerate() {
        let rows = mr.min(mc - t * mr);
        let src = a.at(t * mr, 0);
        if src.rs == 1 {
            // The panel's rows are contiguous for each column: one copy each.
            for (p, col) in panel.chunks_exact_mut(mr).enumerate() {
                // SAFETY: the caller's operand holds the mc×kc block.
                let s = unsafe { std::slice::from_raw_parts(src.at(0, p).ptr, rows) };
                copy_short(&mut col[..rows], s);
                col[rows..].fill(0.0);
            }
        } else {
            // Read the panel's rows side by side, write each of its columns
            // once, in order (rows past `rows` are never read).
            let row: [*const f32; MAX_WIDTH] =
                std::array::from_fn(|i| src.at(i.min(rows.saturating_sub(1)), 0).ptr);
            for (p, col) in panel.chunks_exact_mut(mr).enumerate() {
                let offset = p as isize * src.cs;
                for (i, v) in col.iter_mut().enumerate() {
                    // SAFETY: as above.
                    *v = if i < rows {
                        unsafe { *row[i].wrapping_offset(offset) }
                    } else {
                        0.0
                    };
                }
            }
        }
    }
}

/// `dst ← src` for the few values of one panel column (at most `MAX_WIDTH`),
/// in fixed 8-value moves: a `copy_from_slice` of a run-time length is a
/// `memcpy` call, which cost more than the 12–32 values it copied (2.7% of an
/// MLP training run in `memmove`).
#[inline(always)]
fn copy_short(dst: &mut [f32], src: &[f32]) {
    let mut d = dst.chunks_exact_mut(8);
    let mut s = src.chunks_exact(8);
    for (d, s) in (&mut d).zip(&mut s) {
        d.copy_from_slice(s);
    }
    for (d, &s) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *d = s;
    }
}

/// Packs the `kc×nc` block `b` as `⌈nc/nr⌉` panels, each `kc` rows of `nr`
/// consecutive values (columns past `nc` are zero): [`pack_a`] of its
/// transpose, whose panels have exactly that layout.
pub(super) fn pack_b(buf: &mut Vec<f32>, b: Operand, kc: usize, nc: usize, nr: usize) -> &[f32] {
    pack_a(buf, b.transposed(), nc, kc, nr)
}
