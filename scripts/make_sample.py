#!/usr/bin/env python3
"""Cut the MNIST sample shipped in data/mnist/ from the full set.

Usage: python3 scripts/make_sample.py ../shared/data/mnist data/mnist
Takes the first 5000 training and the first 1000 test images (the files'
own order), writes gzip IDX files with the standard names. gzip's mtime is
fixed to 0 so the output is byte-for-byte reproducible.
"""
import gzip, io, struct, sys, pathlib

src, dst = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
dst.mkdir(parents=True, exist_ok=True)

def read(name):
    data = gzip.open(src / f"{name}.gz").read()
    ndim = data[3]
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return dims, data[4 + 4 * ndim:]

def write(name, dims, body):
    header = bytes([0, 0, 8, len(dims)]) + struct.pack(">" + "I" * len(dims), *dims)
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as f:
        f.write(header + body)
    (dst / f"{name}.gz").write_bytes(buf.getvalue())

for prefix, n in (("train", 5000), ("t10k", 1000)):
    dims, body = read(f"{prefix}-images-idx3-ubyte")
    per = dims[1] * dims[2]
    write(f"{prefix}-images-idx3-ubyte", (n, dims[1], dims[2]), body[: n * per])
    dims, body = read(f"{prefix}-labels-idx1-ubyte")
    write(f"{prefix}-labels-idx1-ubyte", (n,), body[:n])
