"""Inference of the MNIST MLP (784-200-80-10) in PyTorch at batch 128 and 1,
dense (`nn.Linear`) and with the weights as `torch.sparse_csr_tensor`, for the
sparse-kernel rows of docs/BENCHMARKS.md (compare with `cargo bench --bench
sparse -- sparse_mlp`).

Measurement only: nothing in the project imports this. The weights are 3%
dense at random places (as in benches/sparse.rs); the input is random.

Usage: $PY scripts/torch_mlp_infer.py [--threads 2] [--reps 5]
Prints, per batch size and variant, the best and the median over --reps
rounds, each round the median of a timed loop of about 0.5 s.
"""
import argparse
import statistics
import time

import torch


def timed(f, seconds=0.5):
    f()
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 5:
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--density", type=float, default=0.03)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    widths = [784, 200, 80, 10]
    layers = []
    for i, o in zip(widths, widths[1:]):
        w = torch.randn(o, i) * (torch.rand(o, i) < a.density)
        layers.append((w, torch.randn(o)))
    sparse = [(w.to_sparse_csr(), b) for w, b in layers]

    def dense_mlp(x):
        for k, (w, b) in enumerate(layers):
            x = torch.nn.functional.linear(x, w, b)
            if k + 1 < len(layers):
                x = torch.relu(x)
        return x

    def sparse_mlp(x):
        # y = (W · xᵀ)ᵀ + b with W sparse CSR.
        for k, (w, b) in enumerate(sparse):
            x = torch.sparse.mm(w, x.t()).t() + b
            if k + 1 < len(sparse):
                x = torch.relu(x)
        return x

    with torch.no_grad():
        for batch in [128, 1]:
            x = torch.randn(batch, 784)
            for name, f in [("dense", dense_mlp), ("sparse_csr", sparse_mlp)]:
                rounds = [timed(lambda: f(x)) for _ in range(a.reps)]
                print(
                    f"mlp {a.density:.0%} batch {batch:4d} {name:10s}: best {min(rounds) * 1e6:8.1f} µs,"
                    f" median {statistics.median(rounds) * 1e6:8.1f} µs"
                )


if __name__ == "__main__":
    main()
