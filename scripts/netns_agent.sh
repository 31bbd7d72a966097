#!/bin/sh
# netns_agent.sh: stands in for ssh as Open MPI's launcher agent
# (--mca plm_rsh_agent, set by scripts/netns_mpirun.sh): "netns_agent.sh HOST
# CMD..." runs the shell command CMD (orted with its arguments, quoted by
# mpirun for a remote shell) inside network namespace HOST and a private UTS
# namespace whose hostname is HOST, so that Open MPI sees a separate node.
host=$1
shift
case $host in
h[1-9] | h[1-9][0-9] | h[1-9][0-9][0-9]) ;;
*) echo "netns_agent: expected a host h1..hN of scripts/netns_up.sh, found '$host'" >&2; exit 1 ;;
esac
exec ip netns exec "$host" unshare --uts sh -c "hostname $host; $*"
