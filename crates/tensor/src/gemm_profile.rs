//! Opt-in timing of every GEMM call by shape, and a backend override: the
//! tools behind the per-shape tables of docs/BENCHMARKS.md
//! (`cargo run --release --example profile_step`).
//!
//! Both are off by default and cost one relaxed atomic load per call when off.
//! Forcing a backend changes the rounding of the results (the kernels sum in
//! different orders), so it is for measurements, not for training runs.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::gemm::Backend;

static ENABLED: AtomicBool = AtomicBool::new(false);
static FORCED: AtomicU8 = AtomicU8::new(0);
static STATS: Mutex<Vec<GemmStat>> = Mutex::new(Vec::new());

/// Accumulated time of all calls of one shape (since the last [`take`]).
#[derive(Debug, Clone, PartialEq)]
pub struct GemmStat {
    /// Rows of the product.
    pub m: usize,
    /// Inner dimension.
    pub k: usize,
    /// Columns of the product.
    pub n: usize,
    /// `A` read transposed.
    pub trans_a: bool,
    /// `B` read transposed.
    pub trans_b: bool,
    /// Called through `gemm_serial` (one product per rayon task).
    pub serial: bool,
    /// The kernel that ran.
    pub backend: Backend,
    /// Number of calls.
    pub calls: usize,
    /// Total wall time of the calls (for serial calls, summed over the
    /// threads that ran them).
    pub total: Duration,
}

impl GemmStat {
    /// What identifies a call's row: shape, transposes, serial, backend.
    fn key(&self) -> (usize, usize, usize, bool, bool, bool, Backend) {
        let s = self;
        (s.m, s.k, s.n, s.trans_a, s.trans_b, s.serial, s.backend)
    }
}

/// Starts (`true`) or stops recording GEMM calls.
pub fn enable(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// The recorded statistics, in order of first call; clears them.
pub fn take() -> Vec<GemmStat> {
    std::mem::take(&mut *STATS.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Makes every GEMM use `backend` (`None`: the per-shape choice again).
pub fn force_backend(backend: Option<Backend>) {
    let code = match backend {
        None => 0,
        Some(Backend::MatrixMultiply) => 1,
        Some(Backend::GemmCrate) => 2,
        Some(Backend::Packed) => 3,
    };
    FORCED.store(code, Ordering::Relaxed);
}

/// The forced backend, if any.
pub(crate) fn forced() -> Option<Backend> {
    match FORCED.load(Ordering::Relaxed) {
        1 => Some(Backend::MatrixMultiply),
        2 => Some(Backend::GemmCrate),
        3 => Some(Backend::Packed),
        _ => None,
    }
}

/// Times one call while alive, when recording is on.
pub(crate) struct CallTimer {
    key: Option<(GemmStat, Instant)>,
}

impl CallTimer {
    /// Starts timing a call (a no-op unless [`enable`]d).
    pub(crate) fn start(
        (m, k, n): (usize, usize, usize),
        (trans_a, trans_b): (bool, bool),
        serial: bool,
        backend: Backend,
    ) -> CallTimer {
        if !ENABLED.load(Ordering::Relaxed) {
            return CallTimer { key: None };
        }
        let stat = GemmStat {
            m,
            k,
            n,
            trans_a,
            trans_b,
            serial,
            backend,
            calls: 0,
            total: Duration::ZERO,
        };
        CallTimer {
            key: Some((stat, Instant::now())),
        }
    }
}

impl Drop for CallTimer {
    fn drop(&mut self) {
        let Some((stat, start)) = self.key.take() else {
            return;
        };
        let elapsed = start.elapsed();
        let mut stats = STATS.lock().unwrap_or_else(|e| e.into_inner());
        match stats.iter_mut().find(|s| s.key() == stat.key()) {
            Some(s) => {
                s.calls += 1;
                s.total += elapsed;
            }
            None => stats.push(GemmStat {
                calls: 1,
                total: elapsed,
                ..stat
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm;

    #[test]
    fn records_calls_by_shape() {
        // A shape no other test uses, so concurrent tests do not interfere.
        let (m, k, n) = (3, 7, 5);
        let (a, b) = (vec![1.0f32; m * k], vec![1.0f32; k * n]);
        let mut c = vec![0.0f32; m * n];
        enable(true);
        gemm(m, k, n, &a, false, &b, false, &mut c, false);
        gemm(m, k, n, &a, false, &b, false, &mut c, false);
        enable(false);
        let stats = take();
        let s = stats
            .iter()
            .find(|s| (s.m, s.k, s.n) == (m, k, n))
            .expect("recorded");
        assert_eq!(s.calls, 2);
        assert!(!s.serial && !s.trans_a && !s.trans_b);
        assert_eq!(c, vec![7.0; m * n]);
    }
}
