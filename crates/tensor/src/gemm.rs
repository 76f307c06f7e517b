//! Matrix multiplication: the one place the engine calls a GEMM kernel.
//!
//! [`gemm()`] computes `C ← A·B` or `C ← C + A·B` where `A` and `B` may each be
//! read transposed *without copying*: a transposed operand is the same row-major
//! buffer read with swapped strides, handed to `matrixmultiply::sgemm`.
//!
//! Three pure-Rust kernels sit behind it (see [`Backend`]); [`Backend::for_shape`]
//! picks one from the shape and the CPU's features. With matrixmultiply and the
//! engine's own packed GEMM ([`crate::packed`]), the output is split into blocks
//! of rows (or of columns, whichever has more micro-tiles) and each block is one
//! single-threaded call on a rayon worker. Both accumulate every `C[i][j]` over
//! `k` in an order that depends only on `K`, never on where the `M`/`N` split
//! falls, so the result is bitwise the same for any split and any thread count;
//! the test `split_does_not_change_bits` checks this for both.

use rayon::prelude::*;

use crate::gemm_profile::{forced, CallTimer};
use crate::packed::{self, Isa, Operand};
use crate::Tensor;

/// Work (in multiply-adds) below which a product is not split across threads.
const MIN_MACS_PER_BLOCK: usize = 1 << 18;

/// Row/column blocks are rounded to a multiple of this (a micro-kernel tile).
const ALIGN: usize = 8;

/// A raw pointer that may cross to a rayon worker; each block writes a disjoint
/// part of `C`.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// Going through a method makes closures capture the whole (Send) wrapper.
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// One block of an output split: a sub-product of `m×n` whose parts of `A`,
/// `B` and `C` start at `a`, `b` and `c` (same strides as the whole product).
struct Block {
    m: usize,
    n: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
}

/// Splits the `m×n` output `c` (row-major, row stride `n`) into at most
/// `blocks` blocks of whole rows or whole columns, and runs `kernel` on every
/// block — on rayon tasks when there is more than one. Blocks are whole
/// `tile = (rows, columns)` micro-tiles of the kernel; the output is split
/// along the dimension with more tiles (`m ≥ n` for square tiles). `A` is
/// given with its row stride and `B` with its column stride, to offset them to
/// a block's rows or columns. The blocks depend on the shape, `tile` and
/// `blocks` only.
#[allow(clippy::too_many_arguments)]
fn for_each_block(
    m: usize,
    n: usize,
    blocks: usize,
    (tile_m, tile_n): (usize, usize),
    (a, rsa): (*const f32, isize),
    (b, csb): (*const f32, isize),
    c: &mut [f32],
    kernel: impl Fn(Block) + Sync,
) {
    let split_rows = m * tile_n >= n * tile_m;
    let (dim, tile) = if split_rows { (m, tile_m) } else { (n, tile_n) };
    if dim == 0 {
        return;
    }
    let blocks = blocks.clamp(1, dim.div_ceil(tile).max(1));
    let size = dim.div_ceil(blocks).div_ceil(tile) * tile;
    let (ap, bp, cp) = (a as usize, b as usize, SendPtr(c.as_mut_ptr()));
    let run = |start: usize| {
        let len = size.min(dim - start);
        let (a, b) = (ap as *const f32, bp as *const f32);
        // Pointer offsets only (`wrapping_*`): the kernel does the reads and
        // writes, within the bounds its caller checked.
        kernel(if split_rows {
            Block {
                m: len,
                n,
                a: a.wrapping_offset(start as isize * rsa),
                b,
                c: cp.get().wrapping_add(start * n),
            }
        } else {
            Block {
                m,
                n: len,
                a,
                b: b.wrapping_offset(start as isize * csb),
                c: cp.get().wrapping_add(start),
            }
        })
    };
    match dim.div_ceil(size) {
        1 => run(0),
        count => (0..count).into_par_iter().for_each(|i| run(i * size)),
    }
}

/// `C[m×n] ← op(A)·op(B)` (or `C += op(A)·op(B)` when `accumulate`).
///
/// `op(A)` is `m×k`: `A` is stored row-major as `[m, k]`, or as `[k, m]` when
/// `trans_a`. Likewise `op(B)` is `k×n`, stored `[k, n]`, or `[n, k]` when `trans_b`.
/// `C` is row-major `[m, n]`.
///
/// **Panics** if a slice is shorter than its matrix.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    trans_a: bool,
    b: &[f32],
    trans_b: bool,
    c: &mut [f32],
    accumulate: bool,
) {
    let backend = forced().unwrap_or(Backend::for_shape(m, k, n, trans_a));
    let _timer = CallTimer::start((m, k, n), (trans_a, trans_b), false, backend);
    gemm_with(backend, m, k, n, a, trans_a, b, trans_b, c, accumulate);
}

/// [`gemm()`] on the calling thread only: for callers that already run one
/// product per rayon task (e.g. one convolution image per task).
///
/// **Panics** if a slice is shorter than its matrix.
#[allow(clippy::too_many_arguments)]
pub fn gemm_serial(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    trans_a: bool,
    b: &[f32],
    trans_b: bool,
    c: &mut [f32],
    accumulate: bool,
) {
    let backend = forced().unwrap_or(Backend::for_serial_shape(m, k, n));
    let _timer = CallTimer::start((m, k, n), (trans_a, trans_b), true, backend);
    match backend {
        Backend::MatrixMultiply => gemm_blocks(m, k, n, a, trans_a, b, trans_b, c, accumulate, 1),
        Backend::GemmCrate => gemm_crate(m, k, n, a, trans_a, b, trans_b, c, accumulate, false),
        Backend::Packed => gemm_packed(
            Isa::detect(),
            m,
            k,
            n,
            a,
            trans_a,
            b,
            trans_b,
            c,
            accumulate,
            1,
        ),
    }
}

/// The GEMM kernels the engine can call. All are pure Rust, dispatch SIMD at
/// run time, and give bitwise the same result for any thread count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `matrixmultiply::sgemm`, one single-threaded call per block of a
    /// thread-count-independent-by-construction split (see the module docs).
    MatrixMultiply,
    /// The `gemm` crate with its own rayon parallelism.
    GemmCrate,
    /// The engine's own packed GEMM ([`crate::packed`]): AVX-512, AVX2 or
    /// portable micro-kernels chosen from the CPU's features, the output split
    /// into one block per thread. Same bits for any split, thread count and
    /// micro-kernel.
    Packed,
}

impl Backend {
    /// The backend [`gemm_serial`] uses (one product per rayon task, e.g. one
    /// convolution image). Measured inside the training steps (per-shape
    /// timings of every call, docs/BENCHMARKS.md): on one thread the `gemm`
    /// crate is 1.3–2.6× faster for the thin products of first layers and
    /// late stages (`K` or `N` of 16–27: `64×25·25×576`, `4608×512·512×16`) and
    /// for small ones (`128×64·64×256`), while matrixmultiply is ahead by
    /// 5–10% on the tall input-gradient products (`1600×64·64×64`,
    /// `2304×256·256×64`).
    ///
    /// On CPUs with full-rate AVX-512, [`Backend::Packed`] takes
    /// matrixmultiply's place (see [`Backend::for_shape`]).
    pub fn for_serial_shape(m: usize, k: usize, n: usize) -> Backend {
        let choice = if m >= 512 && k.min(n) >= 64 {
            Backend::MatrixMultiply
        } else {
            Backend::GemmCrate
        };
        choice.on_this_cpu()
    }

    /// The backend [`gemm()`] uses for an `m×k · k×n` product: a rule written
    /// from the shape and the CPU's features, never from timings taken at run
    /// time, so the same machine always makes the same choice, for any
    /// thread count.
    ///
    /// The shape rule was measured on an AMD EPYC (Zen 4), from per-shape
    /// timings of every call inside the training steps: the `gemm` crate is
    /// faster on almost every shape, by up to 1.8× (the ResNet forward
    /// `131072×576·576×64`). matrixmultiply won in two cases:
    ///
    /// - very short outputs with a long `k` or wide `n`, `64·m < max(k, n)`:
    ///   the first ResNet stage's weight gradient `64×131072·131072×576`
    ///   (~10%) and the ConvNet's second conv weight gradient
    ///   `64×8192·8192×1600` (11.0 vs 12.8 ms inside the step);
    /// - `A` read transposed with `m ≥ 64`: the dense-layer weight gradient
    ///   `Gᵀ·X`, e.g. `200×128·128×784` (1.1–1.7×).
    ///
    /// On CPUs whose AVX-512 runs at twice the AVX2 rate
    /// ([`crate::packed::avx512_full_rate`]) the engine's own [`Backend::Packed`]
    /// serves those shapes instead of matrixmultiply: measured on an Intel Xeon (Emerald
    /// Rapids, two 512-bit FMA units per core; docs/BENCHMARKS.md) it is at or
    /// above matrixmultiply on every shape of `benches/gemm.rs` (the short
    /// outputs `64×1600×8192` and `64×8192×1600`: 111–162 and 106–146 against
    /// 112 and 103 GFLOP/s), while the `gemm` crate, with its AVX-512 kernels
    /// (`x86-v4`), stays ahead on the square and MLP shapes.
    ///
    /// A single output row (`m = 1`: a dense layer on one image, a
    /// matrix-vector product) always goes to the `gemm` crate, whose
    /// matrix-vector path reads the operands in place: `1×784·784×200` with
    /// `B` transposed took 9.4 µs there against 67 (matrixmultiply) and 118
    /// (packed, which packs all of `B` for one row) on the Intel Xeon.
    pub fn for_shape(m: usize, k: usize, n: usize, trans_a: bool) -> Backend {
        // (Below `GEMM_CRATE_SPLIT_MACS`, where it runs on one thread or as two
        // fixed halves, so the bits do not depend on the thread count.)
        if m == 1 && k.saturating_mul(n) < GEMM_CRATE_SPLIT_MACS {
            return Backend::GemmCrate;
        }
        let choice = if (trans_a && m >= 64) || m.saturating_mul(64) < n.max(k) {
            Backend::MatrixMultiply
        } else {
            Backend::GemmCrate
        };
        choice.on_this_cpu()
    }

    /// `Packed` in place of `MatrixMultiply` on CPUs whose AVX-512 runs at
    /// twice the AVX2 rate ([`crate::packed::avx512_full_rate`]: not Zen 4).
    fn on_this_cpu(self) -> Backend {
        match self {
            Backend::MatrixMultiply if crate::packed::avx512_full_rate() => Backend::Packed,
            other => other,
        }
    }
}

/// [`gemm()`] with an explicit backend (benchmarks and tests compare them).
///
/// **Panics** if a slice is shorter than its matrix.
#[allow(clippy::too_many_arguments)]
pub fn gemm_with(
    backend: Backend,
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    trans_a: bool,
    b: &[f32],
    trans_b: bool,
    c: &mut [f32],
    accumulate: bool,
) {
    match backend {
        Backend::MatrixMultiply => {
            let blocks = default_blocks(m, k, n);
            gemm_blocks(m, k, n, a, trans_a, b, trans_b, c, accumulate, blocks);
        }
        Backend::GemmCrate => gemm_crate(m, k, n, a, trans_a, b, trans_b, c, accumulate, true),
        Backend::Packed => {
            let blocks = default_blocks(m, k, n);
            gemm_packed(
                Isa::detect(),
                m,
                k,
                n,
                a,
                trans_a,
                b,
                trans_b,
                c,
                accumulate,
                blocks,
            );
        }
    }
}

/// The packed GEMM with the micro-kernel `isa` (one this CPU runs: callers
/// pass [`Isa::detect`]; tests every [`Isa::available`] one), the output split
/// into `blocks` blocks of whole micro-tiles (the bits do not depend on the split).
#[allow(clippy::too_many_arguments)]
fn gemm_packed(
    isa: Isa,
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    trans_a: bool,
    b: &[f32],
    trans_b: bool,
    c: &mut [f32],
    accumulate: bool,
    blocks: usize,
) {
    let Strides { rsa, csa, rsb, csb } = Strides::checked(m, k, n, a, trans_a, b, trans_b, c);
    let (ap, bp) = (a.as_ptr(), b.as_ptr());
    // SAFETY: `Strides::checked` bounds every index of the whole product;
    // `for_each_block` hands each call its own rows (or columns) of C; the
    // caller picked an `isa` this CPU runs.
    for_each_block(
        m,
        n,
        blocks,
        isa.tile(),
        (ap, rsa),
        (bp, csb),
        c,
        |blk| unsafe {
            let a = Operand {
                ptr: blk.a,
                rs: rsa,
                cs: csa,
            };
            let b = Operand {
                ptr: blk.b,
                rs: rsb,
                cs: csb,
            };
            packed::sgemm(isa, blk.m, k, blk.n, a, b, blk.c, n, accumulate);
        },
    );
}

#[allow(clippy::too_many_arguments)]
fn gemm_crate(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    trans_a: bool,
    b: &[f32],
    trans_b: bool,
    c: &mut [f32],
    accumulate: bool,
    parallel: bool,
) {
    let Strides { rsa, csa, rsb, csb } = Strides::checked(m, k, n, a, trans_a, b, trans_b, c);
    let macs = m.saturating_mul(k).saturating_mul(n);
    let (ap, bp) = (a.as_ptr(), b.as_ptr());
    let small = (MIN_MACS_PER_BLOCK..GEMM_CRATE_SPLIT_MACS).contains(&macs);
    if parallel && small && m.max(n) >= 2 * ALIGN {
        // Small product: two single-threaded halves (of the rows or of the
        // columns, whichever dimension is larger) on two rayon tasks. The
        // split depends on the shape only, so the bits do not depend on the
        // thread count. Tiny products (under `MIN_MACS_PER_BLOCK`, e.g. the
        // 10-class output layers) run on the calling thread alone, below:
        // waking a second thread costs more than their work (MLP step
        // 0.79–0.93 → 0.75–0.84 ms in six interleaved criterion pairs).
        // SAFETY: `Strides::checked` bounds every index of the whole product;
        // `for_each_block` hands each call its own rows (or columns) of C.
        for_each_block(
            m,
            n,
            2,
            (ALIGN, ALIGN),
            (ap, rsa),
            (bp, csb),
            c,
            |blk| unsafe {
                crate_gemm(
                    blk.m,
                    k,
                    blk.n,
                    blk.a,
                    (rsa, csa),
                    blk.b,
                    (rsb, csb),
                    blk.c,
                    n,
                    accumulate,
                    false,
                );
            },
        );
        return;
    }
    let threads = parallel && macs >= MIN_MACS_PER_BLOCK && rayon::current_num_threads() > 1;
    // SAFETY: `Strides::checked` bounds every index.
    unsafe {
        crate_gemm(
            m,
            k,
            n,
            ap,
            (rsa, csa),
            bp,
            (rsb, csb),
            c.as_mut_ptr(),
            n,
            accumulate,
            threads,
        )
    };
}

/// Below this many multiply-adds a parallel `gemm` crate product runs as two
/// single-threaded halves instead of with the crate's own rayon parallelism,
/// which synchronises its threads several times per call: in the MLP step
/// (products of 1–20 M multiply-adds) that cost ~25% of the time in the
/// scheduler. Above it (every convolution of the paper's networks), the
/// crate's shared packing across threads wins.
const GEMM_CRATE_SPLIT_MACS: usize = 1 << 26;

/// One `gemm::gemm` call: `C[m×n] (row stride ldc) ← op(A)·op(B)`, or `+=`
/// when `accumulate`; `A` and `B` given by pointer and (row, column) strides.
///
/// # Safety
/// Every element the strides address must lie inside the operands' buffers,
/// and `C`'s elements must not be accessed by anyone else during the call.
#[allow(clippy::too_many_arguments)]
unsafe fn crate_gemm(
    m: usize,
    k: usize,
    n: usize,
    a: *const f32,
    (rsa, csa): (isize, isize),
    b: *const f32,
    (rsb, csb): (isize, isize),
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
    threads: bool,
) {
    let par = if threads {
        gemm::Parallelism::Rayon(rayon::current_num_threads())
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the caller's contract; `gemm` computes
    // dst = alpha·dst + beta·lhs·rhs and reads dst only when `read_dst`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c,
            1,
            ldc as isize,
            accumulate,
            a,
            csa,
            rsa,
            b,
            csb,
            rsb,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

/// Row and column strides of the operands as stored (a transposed operand is
/// the same row-major buffer read with swapped strides).
struct Strides {
    rsa: isize,
    csa: isize,
    rsb: isize,
    csb: isize,
}

impl Strides {
    /// The strides of `op(A)` (`m×k`) and `op(B)` (`k×n`), after checking that
    /// every slice holds its matrix.
    ///
    /// **Panics** if a slice is shorter than its matrix.
    #[allow(clippy::too_many_arguments)]
    fn checked(
        m: usize,
        k: usize,
        n: usize,
        a: &[f32],
        trans_a: bool,
        b: &[f32],
        trans_b: bool,
        c: &[f32],
    ) -> Strides {
        assert!(
            a.len() >= m * k,
            "gemm: A has {} values, needs {m}x{k}",
            a.len()
        );
        assert!(
            b.len() >= k * n,
            "gemm: B has {} values, needs {k}x{n}",
            b.len()
        );
        assert!(
            c.len() >= m * n,
            "gemm: C has {} values, needs {m}x{n}",
            c.len()
        );
        let (rsa, csa) = if trans_a {
            (1, m as isize)
        } else {
            (k as isize, 1)
        };
        let (rsb, csb) = if trans_b {
            (1, k as isize)
        } else {
            (n as isize, 1)
        };
        Strides { rsa, csa, rsb, csb }
    }
}

/// How many blocks a product is split into: one per thread, but none smaller
/// than [`MIN_MACS_PER_BLOCK`] multiply-adds.
fn default_blocks(m: usize, k: usize, n: usize) -> usize {
    let macs = m.saturating_mul(k).saturating_mul(n);
    let by_work = (macs / MIN_MACS_PER_BLOCK).max(1);
    by_work.min(rayon::current_num_threads()).max(1)
}

/// [`gemm()`] with an explicit number of blocks (exposed for the split-invariance test).
#[allow(clippy::too_many_arguments)]
#[doc(hidden)]
pub fn gemm_blocks(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    trans_a: bool,
    b: &[f32],
    trans_b: bool,
    c: &mut [f32],
    accumulate: bool,
    blocks: usize,
) {
    let Strides { rsa, csa, rsb, csb } = Strides::checked(m, k, n, a, trans_a, b, trans_b, c);
    if m == 0 || n == 0 {
        return;
    }
    let beta = if accumulate { 1.0 } else { 0.0 };
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(0.0);
        }
        return;
    }
    let (ap, bp) = (a.as_ptr(), b.as_ptr());
    // SAFETY: `Strides::checked` bounds every index of the whole product;
    // `for_each_block` hands each call its own rows (or columns) of C.
    for_each_block(
        m,
        n,
        blocks,
        (ALIGN, ALIGN),
        (ap, rsa),
        (bp, csb),
        c,
        |blk| unsafe {
            matrixmultiply::sgemm(
                blk.m, k, blk.n, 1.0, blk.a, rsa, csa, blk.b, rsb, csb, beta, blk.c, n as isize, 1,
            );
        },
    );
}

/// Matrix product of 2-D tensors: `op(a) · op(b)`, `op` transposing when asked.
///
/// **Panics** if either tensor is not 2-D or the inner dimensions differ.
pub fn matmul(a: &Tensor, trans_a: bool, b: &Tensor, trans_b: bool) -> Tensor {
    let (m, k, n) = matmul_dims(a, trans_a, b, trans_b);
    let mut c = Tensor::zeros(&[m, n]);
    gemm(
        m,
        k,
        n,
        a.data(),
        trans_a,
        b.data(),
        trans_b,
        c.data_mut(),
        false,
    );
    c
}

/// `c ← op(a)·op(b)`, or `c += op(a)·op(b)` when `accumulate` (gradient accumulation).
///
/// **Panics** on any shape mismatch.
pub fn matmul_into(
    a: &Tensor,
    trans_a: bool,
    b: &Tensor,
    trans_b: bool,
    c: &mut Tensor,
    accumulate: bool,
) {
    let (m, k, n) = matmul_dims(a, trans_a, b, trans_b);
    assert!(
        c.shape() == [m, n],
        "matmul_into: output {:?} but product is [{m}, {n}]",
        c.shape()
    );
    gemm(
        m,
        k,
        n,
        a.data(),
        trans_a,
        b.data(),
        trans_b,
        c.data_mut(),
        accumulate,
    );
}

fn matmul_dims(a: &Tensor, trans_a: bool, b: &Tensor, trans_b: bool) -> (usize, usize, usize) {
    assert!(
        a.ndim() == 2 && b.ndim() == 2,
        "matmul: expected 2-D operands, got {:?} and {:?}",
        a.shape(),
        b.shape()
    );
    let (m, ka) = if trans_a {
        (a.dim(1), a.dim(0))
    } else {
        (a.dim(0), a.dim(1))
    };
    let (kb, n) = if trans_b {
        (b.dim(1), b.dim(0))
    } else {
        (b.dim(0), b.dim(1))
    };
    assert!(
        ka == kb,
        "matmul: inner dimensions differ: {:?}{} x {:?}{}",
        a.shape(),
        if trans_a { "ᵀ" } else { "" },
        b.shape(),
        if trans_b { "ᵀ" } else { "" }
    );
    (m, ka, n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::pseudo;

    fn naive(m: usize, k: usize, n: usize, a: &[f32], ta: bool, b: &[f32], tb: bool) -> Vec<f32> {
        let mut c = vec![0.0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0f64;
                for p in 0..k {
                    let av = if ta { a[p * m + i] } else { a[i * k + p] };
                    let bv = if tb { b[j * k + p] } else { b[p * n + j] };
                    s += av as f64 * bv as f64;
                }
                c[i * n + j] = s as f32;
            }
        }
        c
    }

    #[test]
    fn matches_naive_for_all_transpositions() {
        // Small products run as two halves: of the columns when n > m, of the
        // rows otherwise (odd sizes, so the halves are uneven).
        for (m, k, n) in [(37, 29, 45), (45, 29, 37)] {
            let a = pseudo(m * k, 1);
            let b = pseudo(k * n, 2);
            for ta in [false, true] {
                for tb in [false, true] {
                    let mut c = vec![0.0; m * n];
                    gemm(m, k, n, &a, ta, &b, tb, &mut c, false);
                    let r = naive(m, k, n, &a, ta, &b, tb);
                    for (x, y) in c.iter().zip(&r) {
                        assert!(
                            (x - y).abs() < 1e-4,
                            "{m}x{k}x{n} ta={ta} tb={tb}: {x} vs {y}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn backends_agree() {
        let (m, k, n) = (70, 300, 90);
        let a = pseudo(m * k, 5);
        let b = pseudo(k * n, 6);
        for ta in [false, true] {
            for tb in [false, true] {
                for acc in [false, true] {
                    let mut c1 = pseudo(m * n, 7);
                    let mut c2 = c1.clone();
                    gemm_with(
                        Backend::MatrixMultiply,
                        m,
                        k,
                        n,
                        &a,
                        ta,
                        &b,
                        tb,
                        &mut c1,
                        acc,
                    );
                    gemm_with(Backend::GemmCrate, m, k, n, &a, ta, &b, tb, &mut c2, acc);
                    for (x, y) in c1.iter().zip(&c2) {
                        assert!(
                            (x - y).abs() < 1e-4,
                            "ta={ta} tb={tb} acc={acc}: {x} vs {y}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn accumulate_adds_to_c() {
        let a = Tensor::from_vec(&[2, 2], vec![1., 2., 3., 4.]).unwrap();
        let b = Tensor::from_vec(&[2, 2], vec![5., 6., 7., 8.]).unwrap();
        let mut c = Tensor::full(&[2, 2], 1.0);
        matmul_into(&a, false, &b, false, &mut c, true);
        // [1 2;3 4]·[5 6;7 8] = [19 22; 43 50]
        assert_eq!(c.data(), &[20., 23., 44., 51.]);
        matmul_into(&a, true, &b, false, &mut c, false);
        // Aᵀ·B = [1 3;2 4]·[5 6;7 8] = [26 30; 38 44]
        assert_eq!(c.data(), &[26., 30., 38., 44.]);
    }

    /// An empty inner dimension: the product is zero, so `C` is zeroed, or
    /// left as it is when accumulating, by every entry point and backend.
    #[test]
    fn empty_inner_dimension_gives_zero_product() {
        for backend in [Backend::MatrixMultiply, Backend::GemmCrate] {
            for accumulate in [false, true] {
                let mut c = vec![7.0f32; 4 * 40];
                gemm_with(
                    backend,
                    4,
                    0,
                    40,
                    &[],
                    false,
                    &[],
                    false,
                    &mut c,
                    accumulate,
                );
                let want = if accumulate { 7.0 } else { 0.0 };
                assert!(
                    c.iter().all(|&v| v == want),
                    "{backend:?} accumulate={accumulate}"
                );
            }
        }
        let mut c = vec![7.0f32; 4 * 40];
        gemm_serial(4, 0, 40, &[], false, &[], true, &mut c, false);
        assert!(c.iter().all(|&v| v == 0.0), "gemm_serial");
    }

    #[test]
    fn split_does_not_change_bits() {
        for &(m, k, n) in &[(300, 517, 70), (64, 300, 400), (129, 1000, 33)] {
            let a = pseudo(m * k, 3);
            let b = pseudo(k * n, 4);
            let mut reference = vec![0.0; m * n];
            gemm_blocks(m, k, n, &a, false, &b, true, &mut reference, false, 1);
            let mut packed_ref = vec![0.0; m * n];
            gemm_packed(
                Isa::detect(),
                m,
                k,
                n,
                &a,
                false,
                &b,
                true,
                &mut packed_ref,
                false,
                1,
            );
            for blocks in [2, 3, 5, 8] {
                let mut c = vec![0.0; m * n];
                gemm_blocks(m, k, n, &a, false, &b, true, &mut c, false, blocks);
                assert!(c == reference, "({m},{k},{n}) with {blocks} blocks differs");
                let mut c = vec![0.0; m * n];
                gemm_packed(
                    Isa::detect(),
                    m,
                    k,
                    n,
                    &a,
                    false,
                    &b,
                    true,
                    &mut c,
                    false,
                    blocks,
                );
                assert!(
                    c == packed_ref,
                    "packed ({m},{k},{n}) with {blocks} blocks differs"
                );
            }
        }
    }

    /// The packed GEMM split into 2, 3 or 5 blocks gives the bits of one
    /// block (itself checked against the definition in `packed::tests`), for
    /// every micro-kernel this CPU runs, every transposition, with and without
    /// accumulation, on shapes split by rows and by columns.
    #[test]
    fn packed_split_does_not_change_bits_on_any_kernel() {
        for &(m, k, n) in &[(37, 300, 45), (70, 517, 90), (5, 600, 200), (130, 20, 70)] {
            let a = pseudo(m * k, 1);
            let b = pseudo(k * n, 2);
            for isa in Isa::available() {
                for (ta, tb, acc) in (0..8).map(|i| (i & 1 == 1, i & 2 == 2, i & 4 == 4)) {
                    let mut one = pseudo(m * n, 3);
                    gemm_packed(isa, m, k, n, &a, ta, &b, tb, &mut one, acc, 1);
                    for blocks in [2, 3, 5] {
                        let mut c = pseudo(m * n, 3);
                        gemm_packed(isa, m, k, n, &a, ta, &b, tb, &mut c, acc, blocks);
                        assert!(
                            c == one,
                            "{isa:?} ({m},{k},{n}) ta={ta} tb={tb} acc={acc} blocks={blocks}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "inner dimensions differ")]
    fn mismatch_panics_with_shapes() {
        let a = Tensor::zeros(&[2, 3]);
        let b = Tensor::zeros(&[2, 3]);
        let _ = matmul(&a, false, &b, false);
    }
}
