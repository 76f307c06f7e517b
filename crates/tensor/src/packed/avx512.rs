//! The AVX-512F micro-kernel: a 12×32 tile of `C` in 24 zmm registers (two
//! 16-wide loads of `B` and 12 broadcasts of `A` feed 24 FMAs per step).

super::simd_kernel::simd_kernel! {
    features: "avx512f",
    vector: std::arch::x86_64::__m512,
    lanes: 16,
    mr: 12,
    loadu: _mm512_loadu_ps,
    storeu: _mm512_storeu_ps,
    set1: _mm512_set1_ps,
    fmadd: _mm512_fmadd_ps,
    setzero: _mm512_setzero_ps,
}
