//! What data-parallel training needs from the processes it runs on: their
//! number, this one's rank, and three collectives. [`Single`] is one
//! process; the `bregman` binary built with `--features mpi` provides an
//! MPI implementation (`src/mpi_comm.rs`).
//!
//! Every collective must leave the **same bits on every rank** (the ranks
//! then take the same optimizer step and stay identical): a sum is reduced
//! to rank 0 and broadcast from there, never summed in a rank-dependent
//! order.

/// The processes of a data-parallel run.
pub trait Comm {
    /// This process's rank, `0..size()`.
    fn rank(&self) -> usize;
    /// The number of processes.
    fn size(&self) -> usize;
    /// Sums `buf` element-wise over the ranks, in place; every rank receives
    /// rank 0's result bit for bit.
    fn sum_f32(&self, buf: &mut [f32]);
    /// [`Comm::sum_f32`] for `f64`.
    fn sum_f64(&self, buf: &mut [f64]);
    /// Replaces `buf` on every rank by rank 0's.
    fn broadcast_f32(&self, buf: &mut [f32]);
    /// Whether every rank passed the same `value` (all ranks get the answer).
    fn all_equal(&self, value: u64) -> bool;
}

/// One process: every collective is the identity.
#[derive(Debug, Clone, Copy, Default)]
pub struct Single;

impl Comm for Single {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn sum_f32(&self, _: &mut [f32]) {}
    fn sum_f64(&self, _: &mut [f64]) {}
    fn broadcast_f32(&self, _: &mut [f32]) {}
    fn all_equal(&self, _: u64) -> bool {
        true
    }
}

/// The contiguous share `[lo, hi)` of `n` items that rank `rank` of `size`
/// takes: shares differ in length by at most one, in rank order.
pub fn share(n: usize, rank: usize, size: usize) -> (usize, usize) {
    (n * rank / size, n * (rank + 1) / size)
}

/// FNV-1a over the bits of `values`: the fingerprint ranks compare to prove
/// they hold the same parameters.
pub fn fingerprint<'a>(values: impl IntoIterator<Item = &'a [f32]>) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for slice in values {
        for v in slice {
            for b in v.to_bits().to_le_bytes() {
                h ^= b as u64;
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_the_range_in_order() {
        for n in [0, 1, 5, 128, 129] {
            for size in 1..5 {
                let mut next = 0;
                for r in 0..size {
                    let (lo, hi) = share(n, r, size);
                    assert_eq!(lo, next);
                    assert!(hi - lo <= n / size + 1);
                    next = hi;
                }
                assert_eq!(next, n);
            }
        }
    }

    #[test]
    fn fingerprints_see_every_bit() {
        let a = [1.0f32, 2.0];
        let b = [1.0f32, f32::from_bits(2.0f32.to_bits() ^ 1)];
        assert_ne!(fingerprint([&a[..]]), fingerprint([&b[..]]));
        assert_eq!(fingerprint([&a[..]]), fingerprint([&a[..1], &a[1..]]));
    }
}
