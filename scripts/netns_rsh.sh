#!/bin/sh
# OpenMPI's rsh agent for scripts/netns_cluster.sh: `netns_rsh.sh HOST COMMAND...`
# runs COMMAND in the namespace of HOST (10.99.0.K -> btK) instead of over ssh.
host=$1
shift
exec ip netns exec "bt${host##*.}" sh -c "$*"
