//! Packing: copying a block of `A` or `B` into the panel order the
//! micro-kernel reads, zero-padded to whole tiles.

use super::Operand;

/// Largest `MR` and `NR` of any kernel.
const MAX_MR: usize = 12;
const MAX_NR: usize = 32;

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
            // A read transposed: a panel's rows are contiguous for each column.
            for (p, col) in panel.chunks_exact_mut(mr).enumerate() {
                // SAFETY: the caller's operand holds the mc×kc block.
                let s = unsafe { std::slice::from_raw_parts(src.at(0, p).ptr, rows) };
                col[..rows].copy_from_slice(s);
                col[rows..].fill(0.0);
            }
        } else {
            // Rows of A: read the panel's rows side by side, write each column
            // of the panel once, in order.
            let starts: [usize; MAX_MR] = std::array::from_fn(|i| i.min(rows.saturating_sub(1)));
            let row_ptr = |i: usize| src.at(starts[i], 0);
            for (p, col) in panel.chunks_exact_mut(mr).enumerate() {
                for (i, v) in col.iter_mut().enumerate() {
                    // SAFETY: as above (rows past `rows` are not read: zeroed below).
                    *v = if i < rows {
                        unsafe { *row_ptr(i).ptr.wrapping_offset(p as isize * src.cs) }
                    } else {
                        0.0
                    };
                }
            }
        }
    }
}

/// Packs the `kc×nc` block `b` as `⌈nc/nr⌉` panels, each `kc` rows of `nr`
/// consecutive values (columns past `nc` are zero).
pub(super) fn pack_b(buf: &mut Vec<f32>, b: Operand, kc: usize, nc: usize, nr: usize) -> &[f32] {
    let panels = nc.div_ceil(nr);
    let out = aligned(buf, panels * nr * kc);
    for (t, panel) in out.chunks_exact_mut(nr * kc).enumerate() {
        let cols = nr.min(nc - t * nr);
        let src = b.at(0, t * nr);
        if src.cs == 1 {
            for (p, row) in panel.chunks_exact_mut(nr).enumerate() {
                // SAFETY: the caller's operand holds the kc×nc block.
                let s = unsafe { std::slice::from_raw_parts(src.at(p, 0).ptr, cols) };
                row[..cols].copy_from_slice(s);
                row[cols..].fill(0.0);
            }
        } else {
            // B read transposed: read the panel's columns side by side, write
            // each row of the panel once, in order.
            let starts: [usize; MAX_NR] = std::array::from_fn(|j| j.min(cols.saturating_sub(1)));
            for (p, row) in panel.chunks_exact_mut(nr).enumerate() {
                for (j, v) in row.iter_mut().enumerate() {
                    // SAFETY: as above (columns past `cols` are not read).
                    *v = if j < cols {
                        unsafe { *src.at(p, starts[j]).ptr }
                    } else {
                        0.0
                    };
                }
            }
        }
    }
    out
}
