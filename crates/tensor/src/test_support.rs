//! Helpers shared by this crate's unit tests.

/// `n` reproducible values in [-1, 1] from an xorshift generator seeded by `seed`.
pub(crate) fn pseudo(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s % 2001) as f32 / 1000.0 - 1.0
        })
        .collect()
}

/// `n` values of which about a `density` share are non-zero (the rest exactly 0).
pub(crate) fn sparse_values(n: usize, density: f32, seed: u32) -> Vec<f32> {
    let keep = pseudo(n, seed ^ 0x5a5a);
    pseudo(n, seed)
        .into_iter()
        .zip(keep)
        .map(|(v, k)| if (k + 1.0) / 2.0 < density { v } else { 0.0 })
        .collect()
}
