#!/bin/sh
# netns_down.sh: removes the cluster that scripts/netns_up.sh made: the
# namespaces h1..hN and hsw (their veths and the bridge go with them) and their
# /etc/netns/<ns> directories, but only those whose /etc/netns/<ns>/hosts
# carries netns_up.sh's marker line: a namespace of the same name that someone
# else made is left alone. Safe to run twice, or after a partial netns_up.sh.
# usage: scripts/netns_down.sh [-n N]     (default N = 4)
set -u
MARK="# dpsgd netns cluster (scripts/netns_up.sh)"
n=4
while getopts n: o; do
    case $o in
    n) n=$OPTARG ;;
    *) echo "usage: $0 [-n N]" >&2; exit 1 ;;
    esac
done
case $n in
'' | *[!0-9]*) echo "netns_down: -n: expected a number of hosts, found '$n'" >&2; exit 1 ;;
esac
names=
i=1
while [ $i -le "$n" ]; do names="$names h$i"; i=$((i + 1)); done
left=0
for h in $names hsw; do
    [ -f "/etc/netns/$h/hosts" ] && grep -qxF "$MARK" "/etc/netns/$h/hosts" || continue
    # any process still inside (a rank of an aborted job) would keep the
    # namespace alive after `ip netns del` unmounts its name: end it first
    for p in $(ip netns pids "$h" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    if ip netns list | cut -d' ' -f1 | grep -qx "$h"; then
        ip netns del "$h" || left=1
    fi
    rm -rf "/etc/netns/$h"
done
rmdir /etc/netns 2>/dev/null
exit $left
