#!/usr/bin/env python3
"""Bandwidth of a link of scripts/netns_cluster.sh: host 2 sends MB megabytes to host 1.

Usage (root, after `netns_cluster.sh up 2 [RATE]`):
  ip netns exec bt1 python3 scripts/netns_bandwidth.py server &
  ip netns exec bt2 python3 scripts/netns_bandwidth.py client 200
The server prints the megabytes received and MB/s.
"""
import socket
import sys
import time

ADDRESS = ("10.99.0.1", 5999)

if sys.argv[1] == "server":
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(ADDRESS)
    s.listen(1)
    conn, _ = s.accept()
    received, start = 0, time.time()
    while True:
        data = conn.recv(1 << 20)
        if not data:
            break
        received += len(data)
    secs = time.time() - start
    print(f"{received / 1e6:.0f} MB in {secs:.2f} s: {received / 1e6 / secs:.1f} MB/s")
else:
    conn = socket.create_connection(ADDRESS)
    block = b"x" * (1 << 20)
    for _ in range(int(sys.argv[2])):
        conn.sendall(block)
    conn.close()
