#!/usr/bin/env python3
"""The data-parallel scaling model of docs/BENCHMARKS.md ("Data-parallel training (MPI)").

One step on N nodes costs the node's compute t(b) (local batch b, taken proportional to b from
the figure measured at b = 128) plus the gradient exchange as implemented (MPI_Reduce to rank 0,
then MPI_Bcast, segmented pipelines): T(N) = 2 S/B + 2 (N - 1) (s/B + alpha), not overlapped
with the backward pass. Efficiency E = t / (t + T). Prints the table of BENCHMARKS.md.

Usage: python3 scripts/scaling_model.py
"""

ALPHA = 50e-6  # per-hop latency of TCP, seconds
SEGMENT = 65536  # bytes per pipeline segment
# name: (bytes per step = 4 x parameters, compute seconds per step at b = 128, measured on
# the Intel Xeon of BENCHMARKS.md: profile_step resnet18, train_step paper_convnet, the MLP step)
MODELS = {
    "ResNet-18": (11_173_962 * 4, 4.3),
    "ConvNet": (236_618 * 4, 0.050),
    "MLP": (173_890 * 4, 0.0010),
}
NODES = [2, 4, 8, 16, 32, 64]


def exchange(size, bandwidth, nodes):
    """Seconds to reduce `size` bytes to rank 0 and broadcast them back."""
    return 2 * size / bandwidth + 2 * (nodes - 1) * (SEGMENT / bandwidth + ALPHA)


def main():
    print("| model, link | T(2) | T(64) | E at b = 128 for N = 2 ... 64 | b for E >= 90% at N = 2 / 64 |")
    print("|---|---|---|---|---|")
    for name, (size, t128) in MODELS.items():
        for gbit in [10, 25, 100]:
            bw = gbit * 1e9 / 8
            eff = " ".join(f"{t128 / (t128 + exchange(size, bw, n)):.2f}" for n in NODES)
            b90 = [9 * exchange(size, bw, n) / (t128 / 128) for n in (2, 64)]
            print(
                f"| {name}, {gbit} Gb/s | {exchange(size, bw, 2) * 1e3:.1f} ms "
                f"| {exchange(size, bw, 64) * 1e3:.1f} ms | {eff} | {b90[0]:,.0f} / {b90[1]:,.0f} |"
            )
    # The N = 2 check against the namespace run at 1 Gb/s (120 MB/s measured).
    size = MODELS["MLP"][0]
    print(f"\nMLP, 2 nodes at 120 MB/s: {2 * size / 120e6 * 1e3:.1f} ms (bandwidth term), "
          f"{exchange(size, 120e6, 2) * 1e3:.1f} ms (with latency); measured 10.9 ms")


if __name__ == "__main__":
    main()
