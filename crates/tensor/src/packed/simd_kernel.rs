//! One micro-kernel written once for both x86 vector widths: `simd_kernel!`
//! expands to the AVX-512 (zmm, 16 lanes) and the AVX2+FMA (ymm, 8 lanes)
//! kernels, which differ only in their intrinsics and tile height.
//!
//! Per step `p` of the inner dimension: two vector loads of `B`'s packed row,
//! `MR` broadcasts of `A`'s column, `2·MR` fused multiply-adds
//! `c[i][j] ← fma(a[i][p], b[p][j], c[i][j])`: the chain every kernel of
//! this module computes.

/// Defines `Kernel`, an `MR × 2·lanes` [`super::MicroKernel`] on one x86
/// instruction set.
macro_rules! simd_kernel {
    (
        features: $features:literal,
        vector: $vec:ty,
        lanes: $lanes:literal,
        mr: $mr:literal,
        loadu: $loadu:ident,
        storeu: $storeu:ident,
        set1: $set1:ident,
        fmadd: $fmadd:ident,
        setzero: $setzero:ident $(,)?
    ) => {
        use super::MicroKernel;

        /// The micro-kernel of this instruction set.
        pub(super) struct Kernel;

        const MR: usize = $mr;
        const NR: usize = 2 * $lanes;

        impl MicroKernel for Kernel {
            const MR: usize = MR;
            const NR: usize = NR;
            const KC: usize = 256;
            const MC: usize = 960;
            const NC: usize = 1024;

            #[inline(always)]
            unsafe fn tile_cols(
                kc: usize,
                a: (*const f32, usize),
                b: (*const f32, usize),
                c: *mut f32,
                ldc: usize,
                load: bool,
            ) {
                // SAFETY: forwarded contract (the kernel is only chosen when detected).
                unsafe { columns_of_a(kc, a, b, c, ldc, load) }
            }

            #[inline(always)]
            unsafe fn tile_rows(
                kc: usize,
                a: (*const f32, usize),
                b: (*const f32, usize),
                c: *mut f32,
                ldc: usize,
                load: bool,
            ) {
                // SAFETY: as above.
                unsafe { rows_of_a(kc, a, b, c, ldc, load) }
            }
        }

        /// `A[i][p]` at `a + i + p·a_step`, `B[p][j]` at `b + p·b_step + j`.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        unsafe fn columns_of_a(
            kc: usize,
            (a, a_step): (*const f32, usize),
            (b, b_step): (*const f32, usize),
            c: *mut f32,
            ldc: usize,
            load: bool,
        ) {
            use std::arch::x86_64::*;
            // SAFETY: the MicroKernel contract bounds every pointer below.
            unsafe {
                let mut acc = load_c(c, ldc, load);
                let (mut a, mut b) = (a, b);
                for _ in 0..kc {
                    let b0 = $loadu(b);
                    let b1 = $loadu(b.add($lanes));
                    for (i, row) in acc.iter_mut().enumerate() {
                        let ai = $set1(*a.add(i));
                        row[0] = $fmadd(ai, b0, row[0]);
                        row[1] = $fmadd(ai, b1, row[1]);
                    }
                    a = a.add(a_step);
                    b = b.add(b_step);
                }
                store_c(c, ldc, &acc);
            }
        }

        /// `A[i][p]` at `a + i·lda + p` (one pointer per row), `B` as above.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        unsafe fn rows_of_a(
            kc: usize,
            (a, lda): (*const f32, usize),
            (b, b_step): (*const f32, usize),
            c: *mut f32,
            ldc: usize,
            load: bool,
        ) {
            use std::arch::x86_64::*;
            let rows: [*const f32; MR] = std::array::from_fn(|i| a.wrapping_add(i * lda));
            // SAFETY: the MicroKernel contract bounds every pointer below.
            unsafe {
                let mut acc = load_c(c, ldc, load);
                let mut b = b;
                for p in 0..kc {
                    let b0 = $loadu(b);
                    let b1 = $loadu(b.add($lanes));
                    for (row, &ap) in acc.iter_mut().zip(&rows) {
                        let ai = $set1(*ap.add(p));
                        row[0] = $fmadd(ai, b0, row[0]);
                        row[1] = $fmadd(ai, b1, row[1]);
                    }
                    b = b.add(b_step);
                }
                store_c(c, ldc, &acc);
            }
        }

        /// The tile's accumulators: `C` (when `load`) or zero.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn load_c(c: *mut f32, ldc: usize, load: bool) -> [[$vec; 2]; MR] {
            use std::arch::x86_64::*;
            let mut acc = [[$setzero(); 2]; MR];
            if load {
                for (i, row) in acc.iter_mut().enumerate() {
                    // SAFETY: the tile contract: MR rows of NR values, ldc apart.
                    unsafe {
                        row[0] = $loadu(c.add(i * ldc));
                        row[1] = $loadu(c.add(i * ldc + $lanes));
                    }
                }
            }
            acc
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn store_c(c: *mut f32, ldc: usize, acc: &[[$vec; 2]; MR]) {
            use std::arch::x86_64::*;
            for (i, row) in acc.iter().enumerate() {
                // SAFETY: as in `load_c`.
                unsafe {
                    $storeu(c.add(i * ldc), row[0]);
                    $storeu(c.add(i * ldc + $lanes), row[1]);
                }
            }
        }

        #[cfg(not(target_arch = "x86_64"))]
        unsafe fn columns_of_a(
            _: usize,
            _: (*const f32, usize),
            _: (*const f32, usize),
            _: *mut f32,
            _: usize,
            _: bool,
        ) {
            unreachable!("SIMD kernels are only detected on x86-64")
        }

        #[cfg(not(target_arch = "x86_64"))]
        unsafe fn rows_of_a(
            _: usize,
            _: (*const f32, usize),
            _: (*const f32, usize),
            _: *mut f32,
            _: usize,
            _: bool,
        ) {
            unreachable!("SIMD kernels are only detected on x86-64")
        }
    };
}

pub(super) use simd_kernel;
