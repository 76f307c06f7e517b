//! The AVX2+FMA micro-kernel: a 6×16 tile of `C` in 12 ymm registers (two
//! 8-wide loads of `B` and 6 broadcasts of `A` feed 12 FMAs per step).

super::simd_kernel::simd_kernel! {
    features: "avx2,fma",
    vector: std::arch::x86_64::__m256,
    lanes: 8,
    mr: 6,
    loadu: _mm256_loadu_ps,
    storeu: _mm256_storeu_ps,
    set1: _mm256_set1_ps,
    fmadd: _mm256_fmadd_ps,
    setzero: _mm256_setzero_ps,
}
