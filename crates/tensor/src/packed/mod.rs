//! The engine's own blocked GEMM: packed panels and register-tiled micro-kernels
//! (the BLIS design), with the micro-kernel picked from the CPU's features.
//!
//! `C[m×n] ← op(A)·op(B)` (or `+=`) is cut into blocks that fit the caches:
//!
//! ```text
//! for jc in 0..n step NC            // a block of B's columns (L3)
//!   for pc in 0..k step KC          // a slice of the inner dimension
//!     pack B[pc.., jc..] into KC×NR panels            (pack::pack_b)
//!     for ic in 0..m step MC        // a block of A's rows (L2)
//!       pack A[ic.., pc..] into MR×KC panels          (pack::pack_a)
//!       for each NR-panel of B, for each MR-panel of A:
//!         C tile (MR×NR) ← C tile + A panel · B panel  (the micro-kernel, in registers)
//! ```
//!
//! **Bits.** Every micro-kernel computes each output as one chain of fused
//! multiply-adds in increasing `k`: `c ← fma(a[i][p], b[p][j], c)`, starting from
//! 0 (or from `C` when accumulating). Between two `KC` slices the tile's partial
//! sums are stored to `C` and loaded back, which is exact. So the result does not
//! depend on the blocking, on how the output is split across threads, or on the
//! micro-kernel: the AVX-512, AVX2 and portable kernels give the same bits (the
//! test `kernels_give_the_same_bits` checks it on this CPU's kernels).
//!
//! **Which kernel** ([`Isa::detect`], once per process): AVX-512F → 12×32 tiles
//! (24 zmm accumulators; two 16-wide loads of `B` and 12 broadcasts of `A` feed
//! 24 FMAs per `k`), else AVX2+FMA → 6×16 tiles (12 ymm accumulators), else a
//! portable 4×8 kernel on `f32::mul_add`. Intel server cores issue two 512-bit
//! FMAs per cycle (twice AVX2's rate), and there this GEMM is at or above
//! matrixmultiply on every benchmarked shape; Zen 4 splits a 512-bit FMA into
//! two 256-bit halves, so the AVX-512 kernel runs at AVX2's FLOP rate there and
//! measured 13–18% behind matrixmultiply on a short-output weight gradient.
//! The GEMM backend rule therefore uses this GEMM only where
//! [`avx512_full_rate`] says the 512-bit rate is double.

mod avx2;
mod avx512;
mod pack;
mod portable;
mod simd_kernel;

use std::cell::RefCell;
use std::sync::OnceLock;

/// Largest `MR` and `NR` of any kernel (the AVX-512 tile): the sizes of the
/// edge-tile buffer and of the packing routines' pointer arrays.
const MAX_MR: usize = 12;
const MAX_NR: usize = 32;

/// An `m×k` (or `k×n`) operand: a pointer and its row and column strides.
#[derive(Clone, Copy)]
pub(crate) struct Operand {
    /// The element at row 0, column 0.
    pub ptr: *const f32,
    /// Distance between rows.
    pub rs: isize,
    /// Distance between columns.
    pub cs: isize,
}

// SAFETY: an `Operand` is only read, and only within the bounds its creator
// checked; blocks of one product read it from several threads.
unsafe impl Send for Operand {}
unsafe impl Sync for Operand {}

impl Operand {
    /// The same elements read as the transposed matrix.
    fn transposed(self) -> Operand {
        Operand {
            ptr: self.ptr,
            rs: self.cs,
            cs: self.rs,
        }
    }

    /// The operand starting `rows` rows and `cols` columns further in.
    fn at(self, rows: usize, cols: usize) -> Operand {
        let off = rows as isize * self.rs + cols as isize * self.cs;
        Operand {
            ptr: self.ptr.wrapping_offset(off),
            ..self
        }
    }
}

/// A register-tiled micro-kernel: `C[MR×NR] (row stride ldc) ← C + A·B` over
/// `kc` steps. `B[p][j]` is read at `b.0 + p·b.1 + j` (a packed panel, `b.1 =
/// NR`, or `B` itself when its rows are contiguous); `A` as each method says.
trait MicroKernel {
    /// Rows of the tile (values of `A` broadcast per `k`).
    const MR: usize;
    /// Columns of the tile (two vectors).
    const NR: usize;
    /// Inner-dimension slice: one `KC×NR` panel of `B` stays in L1.
    const KC: usize;
    /// Rows of `A` packed at a time.
    const MC: usize;
    /// Columns of `B` packed at a time (the `KC×NC` block stays in L2).
    const NC: usize;

    /// The tile with `A[i][p]` at `a.0 + i + p·a.1` (a packed panel, `a.1 =
    /// MR`, or `A` stored transposed). `load`: start from `C`, else from zero.
    ///
    /// # Safety
    /// Every address above, for `i < MR`, `j < NR`, `p < kc`, is readable;
    /// `c` addresses an `MR×NR` tile with row stride `ldc`; the CPU supports
    /// the kernel's features.
    unsafe fn tile_cols(
        kc: usize,
        a: (*const f32, usize),
        b: (*const f32, usize),
        c: *mut f32,
        ldc: usize,
        load: bool,
    );

    /// The tile with `A[i][p]` at `a.0 + i·a.1 + p` (`A` stored row-major).
    ///
    /// # Safety
    /// As for `tile_cols`.
    unsafe fn tile_rows(
        kc: usize,
        a: (*const f32, usize),
        b: (*const f32, usize),
        c: *mut f32,
        ldc: usize,
        load: bool,
    );
}

/// An operand is read in place instead of packed when the other side of the
/// product has at most this many tiles, so that packing would copy it for
/// little reuse: `A` when the output has ≤ 4 column tiles (the convolution
/// products with 64 output channels: `8192×1600·1600×64` 62 → 118 GFLOP/s on
/// one thread), `B` when it has one row tile (a batch of one). `A` qualifies
/// when one of its strides is 1, `B` when its rows are contiguous. Not `B` for
/// more rows: each row tile then re-reads `B` strided from L3 instead of
/// packed from L2 (`64×8192·8192×1600` fell from 75 to 35 GFLOP/s at 6 tiles).
/// Both figures: Intel Xeon (Emerald Rapids), a throwaway timing loop, this
/// constant changed by hand; `RAYON_NUM_THREADS=1 cargo bench --bench gemm --
/// packed` times the chosen setting.
const DIRECT_MAX_TILES: (usize, usize) = (4, 1);

/// Whether this CPU's 512-bit FMAs run at twice its 256-bit FLOP rate, i.e.
/// whether the AVX-512 kernel doubles the AVX2 kernels' peak. Read from CPUID
/// (vendor and family), never from a timing, once per process:
///
/// - **AMD family 19h** (Zen 4; Zen 3 has no AVX-512): no — each 512-bit FMA is
///   split into two 256-bit halves on its two FMA pipes, so AVX2 code
///   (matrixmultiply's kernels) already reaches the peak. Measured on an AMD
///   EPYC (Zen 4): matrixmultiply beats [`Isa::Avx512`]'s packed GEMM on the
///   short-output products it would take over (`64×8192·8192×1600` with `A`
///   transposed: 11.3 against 13.4 ms; docs/BENCHMARKS.md).
/// - **Every other AVX-512 CPU**: yes. Measured on an Intel Xeon (Emerald
///   Rapids, two 512-bit FMA units per core), where the packed AVX-512 GEMM is
///   at or above matrixmultiply on every benchmarked shape. AMD family 1Ah
///   (Zen 5) has full-width 512-bit datapaths; Intel parts with a single
///   512-bit FMA unit (some Xeon Silver/Bronze) would be better served by
///   `false`, but CPUID does not report the unit count.
pub fn avx512_full_rate() -> bool {
    static FULL: OnceLock<bool> = OnceLock::new();
    *FULL.get_or_init(|| Isa::detect() == Isa::Avx512 && !is_amd_family_19h())
}

/// CPUID leaf 0 (vendor "AuthenticAMD") and leaf 1 (extended family 0x19 =
/// base family 0xF + extended family 0xA).
fn is_amd_family_19h() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::__cpuid;
        // SAFETY: CPUID exists on every x86-64 CPU; leaves 0 and 1 always do.
        #[allow(unused_unsafe)]
        let (leaf0, leaf1) = unsafe { (__cpuid(0), __cpuid(1)) };
        let vendor = [leaf0.ebx, leaf0.edx, leaf0.ecx];
        let is_amd = vendor == [0x6874_7541, 0x6974_6e65, 0x444d_4163]; // "AuthenticAMD"
        is_amd && cpu_family(leaf1.eax) == 0x19
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The display family of a CPUID leaf-1 `eax` signature: the base family
/// (bits 8–11), plus the extended family (bits 20–27) when the base is 0xF.
fn cpu_family(eax: u32) -> u32 {
    let base = (eax >> 8) & 0xF;
    if base == 0xF {
        base + ((eax >> 20) & 0xFF)
    } else {
        base
    }
}

/// The instruction set the micro-kernel is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// AVX-512F: 12×32 tiles in zmm registers.
    Avx512,
    /// AVX2 and FMA: 6×16 tiles in ymm registers.
    Avx2,
    /// Anything else: a 4×8 tile in plain Rust (`f32::mul_add`).
    Portable,
}

impl Isa {
    /// The best kernel this CPU runs, detected once per process.
    pub fn detect() -> Isa {
        static ISA: OnceLock<Isa> = OnceLock::new();
        *ISA.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx512f") {
                    return Isa::Avx512;
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    return Isa::Avx2;
                }
            }
            Isa::Portable
        })
    }

    /// The micro-tile `(MR, NR)` of this kernel.
    pub fn tile(self) -> (usize, usize) {
        fn of<K: MicroKernel>() -> (usize, usize) {
            (K::MR, K::NR)
        }
        match self {
            Isa::Avx512 => of::<avx512::Kernel>(),
            Isa::Avx2 => of::<avx2::Kernel>(),
            Isa::Portable => of::<portable::Kernel>(),
        }
    }

    /// Every kernel this CPU can run (the tests compare them).
    pub fn available() -> Vec<Isa> {
        let best = Isa::detect();
        [Isa::Avx512, Isa::Avx2, Isa::Portable]
            .into_iter()
            .filter(|&isa| {
                matches!(
                    (best, isa),
                    (_, Isa::Portable) | (Isa::Avx512, _) | (Isa::Avx2, Isa::Avx2)
                )
            })
            .collect()
    }
}

/// Reused packing buffers of one thread (no allocation in steady state).
#[derive(Default)]
struct Scratch {
    a: Vec<f32>,
    b: Vec<f32>,
    /// The last, cut-short panel of an operand read in place.
    edge_a: Vec<f32>,
    edge_b: Vec<f32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// `C[m×n] (row stride ldc) ← op(A)·op(B)`, or `+=` when `accumulate`, with the
/// kernel `isa`, on the calling thread (`crate::gemm` splits the output across
/// threads into blocks of whole [`Isa::tile`]s).
///
/// # Safety
/// `a` and `b` address `m×k` and `k×n` elements inside their buffers, `c`
/// addresses `m×n` elements with row stride `ldc` that nobody else touches
/// during the call, and `isa` runs on this CPU.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn sgemm(
    isa: Isa,
    m: usize,
    k: usize,
    n: usize,
    a: Operand,
    b: Operand,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    // SAFETY: forwarded contract.
    unsafe {
        match isa {
            Isa::Avx512 => serial::<avx512::Kernel>(m, k, n, a, b, c, ldc, accumulate),
            Isa::Avx2 => serial::<avx2::Kernel>(m, k, n, a, b, c, ldc, accumulate),
            Isa::Portable => serial::<portable::Kernel>(m, k, n, a, b, c, ldc, accumulate),
        }
    }
}

/// The loop nest of the module docs.
#[allow(clippy::too_many_arguments)]
unsafe fn serial<K: MicroKernel>(
    m: usize,
    k: usize,
    n: usize,
    a: Operand,
    b: Operand,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    const { assert!(K::MR <= MAX_MR && K::NR <= MAX_NR) };
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                // SAFETY: row i of the m×n output.
                unsafe { std::ptr::write_bytes(c.add(i * ldc), 0, n) };
            }
        }
        return;
    }
    let direct_a = (a.cs == 1 || a.rs == 1) && n.div_ceil(K::NR) <= DIRECT_MAX_TILES.0;
    let direct_b = b.cs == 1 && m.div_ceil(K::MR) <= DIRECT_MAX_TILES.1;
    SCRATCH.with(|scratch| {
        let mut guard = scratch.borrow_mut();
        let Scratch {
            a: abuf,
            b: bbuf,
            edge_a,
            edge_b,
        } = &mut *guard;
        // Equal slices (784 = 4 × 196, not 3 × 256 + 16), whole tiles along
        // m and n; the bits do not depend on them.
        let nc_step = even(n, K::NC).next_multiple_of(K::NR);
        let mc_step = even(m, K::MC).next_multiple_of(K::MR);
        let kc_step = even(k, K::KC);
        for jc in (0..n).step_by(nc_step) {
            let nc = nc_step.min(n - jc);
            for pc in (0..k).step_by(kc_step) {
                let kc = kc_step.min(k - pc);
                let b_blk = b.at(pc, jc);
                // In place, only the last panel is packed if it is cut short.
                let bp = if direct_b {
                    let last = nc / K::NR * K::NR;
                    pack::pack_b(edge_b, b_blk.at(0, last), kc, nc - last, K::NR)
                } else {
                    pack::pack_b(bbuf, b_blk, kc, nc, K::NR)
                };
                let load = accumulate || pc > 0;
                for ic in (0..m).step_by(mc_step) {
                    let mc = mc_step.min(m - ic);
                    let a_blk = a.at(ic, pc);
                    let last = mc / K::MR * K::MR;
                    let ap = if direct_a {
                        pack::pack_a(edge_a, a_blk.at(last, 0), mc - last, kc, K::MR)
                    } else {
                        pack::pack_a(abuf, a_blk, mc, kc, K::MR)
                    };
                    for ir in (0..mc).step_by(K::MR) {
                        let rows = K::MR.min(mc - ir);
                        let apanel = match (direct_a, rows == K::MR) {
                            (false, _) => APanel::Cols(ap[ir * kc..].as_ptr(), K::MR),
                            (true, false) => APanel::Cols(ap.as_ptr(), K::MR),
                            (true, true) if a.cs == 1 => {
                                APanel::Rows(a_blk.at(ir, 0).ptr, a.rs as usize)
                            }
                            (true, true) => APanel::Cols(a_blk.at(ir, 0).ptr, a.cs as usize),
                        };
                        for jr in (0..nc).step_by(K::NR) {
                            let cols = K::NR.min(nc - jr);
                            let bpanel = match (direct_b, cols == K::NR) {
                                (false, _) => (bp[jr * kc..].as_ptr(), K::NR),
                                (true, false) => (bp.as_ptr(), K::NR),
                                (true, true) => (b_blk.at(0, jr).ptr, b.rs as usize),
                            };
                            // SAFETY: the tile lies inside C; the panels hold kc steps.
                            unsafe {
                                let ct = c.add((ic + ir) * ldc + jc + jr);
                                tile::<K>(kc, apanel, bpanel, ct, ldc, rows, cols, load);
                            }
                        }
                    }
                }
            }
        }
    });
}

/// The step that cuts `len` into the fewest slices of at most `max`, all of
/// (nearly) equal length.
fn even(len: usize, max: usize) -> usize {
    len.div_ceil(len.div_ceil(max).max(1)).max(1)
}

/// Where a tile reads its `MR` rows of `A`.
#[derive(Clone, Copy)]
enum APanel {
    /// `A[i][p]` at `ptr + i + p·step` (packed, or `A` stored transposed).
    Cols(*const f32, usize),
    /// `A[i][p]` at `ptr + i·lda + p` (`A` stored row-major).
    Rows(*const f32, usize),
}

/// One tile, through a full-size buffer when it is cut by the edge of `C`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn tile<K: MicroKernel>(
    kc: usize,
    a: APanel,
    b: (*const f32, usize),
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    load: bool,
) {
    let run = |c: *mut f32, ldc: usize| match a {
        // SAFETY: the caller's contract.
        APanel::Cols(a, step) => unsafe { K::tile_cols(kc, (a, step), b, c, ldc, load) },
        APanel::Rows(a, lda) => unsafe { K::tile_rows(kc, (a, lda), b, c, ldc, load) },
    };
    if rows == K::MR && cols == K::NR {
        run(c, ldc);
        return;
    }
    let mut buf = [0.0f32; MAX_MR * MAX_NR];
    // SAFETY: the caller's contract; the edge buffer is a full MR×NR tile.
    unsafe {
        if load {
            for i in 0..rows {
                std::ptr::copy_nonoverlapping(
                    c.add(i * ldc),
                    buf.as_mut_ptr().add(i * K::NR),
                    cols,
                );
            }
        }
        run(buf.as_mut_ptr(), K::NR);
        for i in 0..rows {
            std::ptr::copy_nonoverlapping(buf.as_ptr().add(i * K::NR), c.add(i * ldc), cols);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::pseudo;

    /// Leaf-1 signatures of real CPUs decode to their families: Intel Sapphire
    /// Rapids (family 6), AMD Genoa (Zen 4, 19h), AMD Turin (Zen 5, 1Ah).
    #[test]
    fn cpu_family_decodes_real_signatures() {
        assert_eq!(cpu_family(0x0008_06F8), 0x6);
        assert_eq!(cpu_family(0x00A1_0F11), 0x19);
        assert_eq!(cpu_family(0x00B0_0F21), 0x1A);
    }

    /// Full-rate AVX-512 needs AVX-512, and Zen 4 never has it.
    #[test]
    fn full_rate_avx512_follows_the_cpu() {
        if avx512_full_rate() {
            assert_eq!(Isa::detect(), Isa::Avx512);
        }
        if is_amd_family_19h() {
            assert!(!avx512_full_rate());
        }
    }

    /// The definition: one `mul_add` chain per output in increasing `k`.
    fn fma_chain(m: usize, k: usize, n: usize, a: Operand, b: Operand, c: &mut [f32], acc: bool) {
        for i in 0..m {
            for j in 0..n {
                let mut s = if acc { c[i * n + j] } else { 0.0 };
                for p in 0..k {
                    // SAFETY: test operands hold the whole matrices.
                    let (x, y) = unsafe { (*a.at(i, p).ptr, *b.at(p, j).ptr) };
                    s = x.mul_add(y, s);
                }
                c[i * n + j] = s;
            }
        }
    }

    fn operand(buf: &[f32], rows: usize, cols: usize, trans: bool) -> Operand {
        let (rs, cs) = if trans {
            (1, rows as isize)
        } else {
            (cols as isize, 1)
        };
        Operand {
            ptr: buf.as_ptr(),
            rs,
            cs,
        }
    }

    /// Every kernel, every transposition, edge tiles (including operands read
    /// in place) and several K slices: bitwise equal to the FMA chain of the
    /// definition. (Splits across threads: `gemm::tests`.)
    #[test]
    fn kernels_give_the_same_bits() {
        for &(m, k, n) in &[
            (1, 1, 1),
            (13, 7, 33),
            (37, 300, 45),
            (70, 517, 90),
            (5, 600, 200),
        ] {
            let a = pseudo(m * k, 1);
            let b = pseudo(k * n, 2);
            for ta in [false, true] {
                for tb in [false, true] {
                    for acc in [false, true] {
                        let (oa, ob) = (operand(&a, m, k, ta), operand(&b, k, n, tb));
                        let mut want = pseudo(m * n, 3);
                        fma_chain(m, k, n, oa, ob, &mut want, acc);
                        for isa in Isa::available() {
                            let mut c = pseudo(m * n, 3);
                            // SAFETY: operands hold the whole matrices.
                            unsafe { sgemm(isa, m, k, n, oa, ob, c.as_mut_ptr(), n, acc) };
                            assert!(c == want, "{isa:?} ({m},{k},{n}) ta={ta} tb={tb} acc={acc}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn empty_inner_dimension_zeroes_or_keeps_c() {
        for isa in Isa::available() {
            for acc in [false, true] {
                let mut c = vec![7.0f32; 4 * 40];
                let none = Operand {
                    ptr: std::ptr::null(),
                    rs: 0,
                    cs: 1,
                };
                // SAFETY: k = 0: the operands are never read.
                unsafe { sgemm(isa, 4, 0, 40, none, none, c.as_mut_ptr(), 40, acc) };
                let want = if acc { 7.0 } else { 0.0 };
                assert!(c.iter().all(|&v| v == want), "{isa:?} acc={acc}");
            }
        }
    }
}
