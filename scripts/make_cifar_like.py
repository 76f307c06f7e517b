#!/usr/bin/env python3
"""Writes a CIFAR-10-format data set (binary version) that a network can learn.

CIFAR-10 itself cannot be downloaded here, so the ResNet-18 path is exercised
on generated records in the real format: `data_batch_{1..5}.bin` and
`test_batch.bin`, each record 1 label byte + 3072 pixel bytes (R, G, B planes
of 32×32). Class c is a colour gradient whose direction and hue depend on c,
plus uniform noise, so the classes are separable but not trivially.

Usage: python3 scripts/make_cifar_like.py OUT_DIR [TRAIN_PER_BATCH] [TEST]
writes OUT_DIR/cifar-10/*.bin (pass OUT_DIR as --data-dir).
"""
import math, os, random, sys

out = os.path.join(sys.argv[1], "cifar-10")
per_batch = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
n_test = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
os.makedirs(out, exist_ok=True)
rng = random.Random(0)

def record(label):
    ang = 2 * math.pi * label / 10
    dx, dy = math.cos(ang), math.sin(ang)
    hue = [0.5 + 0.5 * math.cos(ang + k * 2 * math.pi / 3) for k in range(3)]
    px = bytearray([label])
    for ch in range(3):
        for y in range(32):
            for x in range(32):
                t = 0.5 + 0.5 * ((x - 15.5) * dx + (y - 15.5) * dy) / 22.0
                v = 255 * (0.6 * t * hue[ch] + 0.4 * rng.random())
                px.append(max(0, min(255, int(v))))
    return bytes(px)

def write(name, n):
    with open(os.path.join(out, name), "wb") as f:
        for i in range(n):
            f.write(record(rng.randrange(10)))

for b in range(1, 6):
    write(f"data_batch_{b}.bin", per_batch)
write("test_batch.bin", n_test)
print(f"wrote {5 * per_batch} training and {n_test} test records to {out}")
