"""sgemm in PyTorch (MKL / oneDNN) at exactly the shapes of `benches/gemm.rs`.

Measurement only, for the side-by-side table in docs/BENCHMARKS.md: nothing in the
project imports this. Transposed operands are transposed *views* of row-major
buffers, as the engine reads them (A stored [k, m] when A is transposed, B stored
[n, k] when B is transposed).

Usage: $PY scripts/torch_gemm_shapes.py [--threads 2] [--reps 3]
Prints one line per shape: best and median time and GFLOP/s over --reps rounds,
each round the median of a timed loop of about 0.5 s.
"""
import argparse
import statistics
import time

import torch

# (M, K, N, A transposed, B transposed, name): keep in step with benches/gemm.rs.
SHAPES = [
    (128, 784, 200, False, False, "mlp_fc1"),
    (128, 200, 80, False, False, "mlp_fc2"),
    (200, 128, 784, False, False, "mlp_fc1_dw"),
    (64, 1600, 8192, False, False, "conv2_channel_major"),
    (8192, 1600, 64, False, False, "conv2_pixel_major"),
    (8192, 1600, 64, False, True, "conv2_fwd"),
    (8192, 64, 1600, False, False, "conv2_dx"),
    (64, 8192, 1600, True, False, "conv2_dw"),
    (1024, 1024, 1024, False, False, "square_1024"),
]


def operands(m, k, n, ta, tb):
    a = torch.randn(k, m).t() if ta else torch.randn(m, k)
    b = torch.randn(n, k).t() if tb else torch.randn(k, n)
    return a, b, torch.empty(m, n)


def round_median(fn, budget=0.5):
    fn()
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-6)
    reps = max(5, int(budget / once))
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for m, k, n, ta, tb, name in SHAPES:
        a, b, c = operands(m, k, n, ta, tb)
        meds = [round_median(lambda: torch.mm(a, b, out=c)) for _ in range(args.reps)]
        flop = 2.0 * m * k * n
        best = min(meds)
        print(
            f"{m}x{k}x{n}_{name:22s} best {best * 1e3:8.3f} ms {flop / best / 1e9:7.1f} GFLOP/s"
            f"   medians {', '.join(f'{t * 1e3:.3f}' for t in meds)} ms"
        )


if __name__ == "__main__":
    main()
