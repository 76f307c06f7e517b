//! The portable micro-kernel: a 4×8 tile in plain Rust, for CPUs without AVX2
//! (and other architectures). `f32::mul_add` rounds once, like the SIMD FMAs,
//! so it gives the same bits as the other kernels.

use super::MicroKernel;

/// The 4×8 portable kernel.
pub(super) struct Kernel;

const MR: usize = 4;
const NR: usize = 8;

impl MicroKernel for Kernel {
    const MR: usize = MR;
    const NR: usize = NR;
    const KC: usize = 256;
    const MC: usize = 256;
    const NC: usize = 2048;

    unsafe fn tile_cols(
        kc: usize,
        (a, a_step): (*const f32, usize),
        b: (*const f32, usize),
        c: *mut f32,
        ldc: usize,
        load: bool,
    ) {
        // SAFETY: forwarded; row i at a + i, step p at a + p·a_step.
        unsafe { run(kc, a, 1, a_step, b, c, ldc, load) }
    }

    unsafe fn tile_rows(
        kc: usize,
        (a, lda): (*const f32, usize),
        b: (*const f32, usize),
        c: *mut f32,
        ldc: usize,
        load: bool,
    ) {
        // SAFETY: forwarded; rows lda apart, step p at a + p.
        unsafe { run(kc, a, lda, 1, b, c, ldc, load) }
    }
}

/// The tile with `A[i][p]` at `a + i·rs + p·ks`.
#[allow(clippy::too_many_arguments)]
unsafe fn run(
    kc: usize,
    a: *const f32,
    rs: usize,
    ks: usize,
    (b, b_step): (*const f32, usize),
    c: *mut f32,
    ldc: usize,
    load: bool,
) {
    {
        let mut acc = [[0.0f32; NR]; MR];
        // SAFETY: the MicroKernel::tile contract bounds every pointer below.
        unsafe {
            if load {
                for (i, row) in acc.iter_mut().enumerate() {
                    std::ptr::copy_nonoverlapping(c.add(i * ldc), row.as_mut_ptr(), NR);
                }
            }
            for p in 0..kc {
                let bp = std::slice::from_raw_parts(b.add(p * b_step), NR);
                for (i, row) in acc.iter_mut().enumerate() {
                    let ai = *a.add(i * rs + p * ks);
                    for (cij, &bj) in row.iter_mut().zip(bp) {
                        *cij = ai.mul_add(bj, *cij);
                    }
                }
            }
            for (i, row) in acc.iter().enumerate() {
                std::ptr::copy_nonoverlapping(row.as_ptr(), c.add(i * ldc), NR);
            }
        }
    }
}
