#!/usr/bin/env bash
# A small "cluster" on one machine: N network namespaces (bt1 ... btN, hosts
# 10.99.0.1 ... 10.99.0.N) on one bridge, each with its own network stack, so
# that `mpirun` starts its ranks as on separate hosts and they talk over TCP
# (OpenMPI's tcp BTL) through veth links instead of shared memory (#15).
# Needs root (ip netns, tc). Usage:
#   bash scripts/netns_cluster.sh up N [RATE]   # RATE e.g. 10gbit: a tbf limit on every host's link
#   bash scripts/netns_cluster.sh run N ARGS... # mpirun -np N ARGS... from host 1, one rank per host
#   bash scripts/netns_cluster.sh down N
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 up N [RATE] | run N COMMAND... | down N" >&2
  exit 2
fi
cmd=$1 n=$2
here=$(cd "$(dirname "$0")" && pwd)
case $cmd in
up)
  rate=${3:-}
  ip link add bt-br type bridge
  ip link set bt-br up
  for i in $(seq 1 "$n"); do
    ip netns add "bt$i"
    ip link add "bt$i-a" type veth peer name "bt$i-b"
    ip link set "bt$i-b" netns "bt$i"
    ip link set "bt$i-a" master bt-br up
    ip -n "bt$i" addr add "10.99.0.$i/24" dev "bt$i-b"
    ip -n "bt$i" link set "bt$i-b" up
    ip -n "bt$i" link set lo up
    if [ -n "$rate" ]; then
      ip netns exec "bt$i" tc qdisc add dev "bt$i-b" root tbf rate "$rate" burst 64kb latency 100ms
    fi
  done
  ;;
run)
  shift 2
  hosts=$(mktemp)
  for i in $(seq 1 "$n"); do echo "10.99.0.$i slots=1" >> "$hosts"; done
  # OpenMPI starts its daemon on every other host through the "rsh agent";
  # netns_rsh.sh runs it inside that host's namespace instead of over ssh.
  ip netns exec bt1 mpirun --hostfile "$hosts" -np "$n" \
    --mca plm_rsh_agent "$here/netns_rsh.sh" \
    --mca btl tcp,self --mca btl_tcp_if_include 10.99.0.0/24 --mca oob_tcp_if_include 10.99.0.0/24 \
    --bind-to none -x RAYON_NUM_THREADS -x BREGMAN_DATA -x OMPI_ALLOW_RUN_AS_ROOT -x OMPI_ALLOW_RUN_AS_ROOT_CONFIRM \
    "$@"
  rm -f "$hosts"
  ;;
down)
  for i in $(seq 1 "$n"); do ip netns del "bt$i" 2>/dev/null || true; done
  ip link del bt-br 2>/dev/null || true
  ;;
*) echo "usage: $0 up|run|down N ..." >&2; exit 2 ;;
esac
