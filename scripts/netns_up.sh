#!/bin/sh
# netns_up.sh: starts a cluster of N emulated hosts h1..hN on this machine, one
# Linux network namespace each (a private network stack: its own veth, address,
# routes and qdisc), for `make test-hosts` and bench/hosts.sh. Needs root and
# iproute2. Design from ../shared/probes/mpi/FINDINGS.md section 3:
#
#     h1: veth1 10.99.0.1/24 --+
#     h2: veth2 10.99.0.2/24 --+-- br0 (in namespace hsw)
#     ...                      |
#     hN: vethN 10.99.0.N/24 --+
#
# The bridge lives in a namespace of its own, so the root namespace's links,
# addresses and routes are never touched. Names h1..hN resolve through
# /etc/netns/h<i>/hosts, which `ip netns exec h<i>` bind-mounts over
# /etc/hosts: /etc/hosts itself is never edited. Every namespace we create has
# such a file carrying the marker line below; netns_down.sh removes only
# namespaces whose file carries it.
#
# -r RATE (e.g. 1gbit) puts a token-bucket filter (tbf) on each host's egress:
# a host sends at most RATE, like a NIC of that speed. This kernel has no
# netem, so no delay can be added here (docs/scaling.md models delay instead).
#
# usage: scripts/netns_up.sh [-n N] [-r RATE]     (default N = 4, no limit)
set -eu
MARK="# dpsgd netns cluster (scripts/netns_up.sh)"
n=4
rate=
while getopts n:r: o; do
    case $o in
    n) n=$OPTARG ;;
    r) rate=$OPTARG ;;
    *) echo "usage: $0 [-n N] [-r RATE]" >&2; exit 1 ;;
    esac
done
case $n in
'' | *[!0-9]*) echo "netns_up: -n: expected a number of hosts in 1..250, found '$n'" >&2; exit 1 ;;
esac
if [ "$n" -lt 1 ] || [ "$n" -gt 250 ]; then
    echo "netns_up: -n: expected a number of hosts in 1..250, found '$n'" >&2
    exit 1
fi
[ "$(id -u)" = 0 ] || { echo "netns_up: must run as root (creates network namespaces)" >&2; exit 1; }
command -v ip >/dev/null && ip netns list >/dev/null 2>&1 ||
    { echo "netns_up: 'ip netns' is unavailable (install iproute2)" >&2; exit 1; }

# Refuse to touch anything that is already there: it may be someone else's,
# or a cluster left running (scripts/netns_down.sh removes ours).
names="hsw"
i=1
while [ $i -le "$n" ]; do names="$names h$i"; i=$((i + 1)); done
existing=$(ip netns list | cut -d' ' -f1)
for h in $names; do
    if echo "$existing" | grep -qx "$h" || [ -e "/etc/netns/$h" ]; then
        echo "netns_up: namespace $h already exists (scripts/netns_down.sh -n $n removes a cluster of ours)" >&2
        exit 1
    fi
done

# From here on, a failure removes whatever was made (the marker files are
# written before their namespace, so netns_down.sh finds every one).
here=$(cd "$(dirname "$0")" && pwd)
trap 'sh "$here/netns_down.sh" -n "$n" >/dev/null 2>&1; echo "netns_up: failed; removed what was made" >&2' EXIT

hostsfile() { # namespace: writes its /etc/netns/<ns>/hosts
    mkdir -p "/etc/netns/$1"
    {
        echo "$MARK"
        echo "127.0.0.1 localhost"
        j=1
        while [ $j -le "$n" ]; do echo "10.99.0.$j h$j"; j=$((j + 1)); done
    } >"/etc/netns/$1/hosts"
}

hostsfile hsw
ip netns add hsw
ip -n hsw link set lo up
ip -n hsw link add br0 type bridge
ip -n hsw link set br0 up
i=1
while [ $i -le "$n" ]; do
    hostsfile "h$i"
    ip netns add "h$i"
    ip link add "veth$i" netns "h$i" type veth peer name "sw$i" netns hsw
    ip -n hsw link set "sw$i" master br0
    ip -n hsw link set "sw$i" up
    ip -n "h$i" link set lo up
    ip -n "h$i" addr add "10.99.0.$i/24" dev "veth$i"
    ip -n "h$i" link set "veth$i" up
    if [ -n "$rate" ]; then
        # burst 128kb, latency 5ms: the probe's settings (iperf3 958 Mbit/s at 1gbit)
        tc -n "h$i" qdisc replace dev "veth$i" root tbf rate "$rate" burst 128kb latency 5ms
    fi
    i=$((i + 1))
done
trap - EXIT
echo "netns_up: hosts h1..h$n at 10.99.0.1..$n/24${rate:+, egress limited to $rate each}"
