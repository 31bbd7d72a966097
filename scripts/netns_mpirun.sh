#!/bin/sh
# netns_mpirun.sh: mpirun across the hosts of scripts/netns_up.sh, e.g.
#   scripts/netns_mpirun.sh --host h1,h2,h3,h4 -np 4 build/dpsgd train ...
#   scripts/netns_mpirun.sh --host h1:2,h2:2 -np 4 build/tests/check_allreduce
# mpirun itself runs inside h1 (hostname h1, so h1 is its local node) and
# starts the daemons of the other hosts through scripts/netns_agent.sh instead
# of ssh. Ranks on one host talk over shared memory (vader), ranks on
# different hosts over TCP on 10.99.0.0/24 only. Settings, measured in
# ../shared/probes/mpi/FINDINGS.md section 3 (the multi-link hang, here):
#  - mpi_yield_when_idle 1 is REQUIRED: every host shares this machine's two
#    cores, and ranks that busy-poll starve the softirq work that carries
#    packets across the veths and the bridge: each message then costs ~8 ms
#    (two ticks at HZ=250) instead of ~40 us;
#  - btl_tcp_links 2: two TCP connections per peer pair; with one, a
#    sendrecv under a tbf limit gets half the rate in each direction. But
#    with SEVERAL RANKS PER HOST set OMPI_MCA_btl_tcp_links=1: Open MPI
#    4.1.4's multi-link TCP hangs there now and then (check_allreduce on
#    --host h1:2,h2:2,h3:2,h4:2 hung in 6 of 20 runs with 2 links, 0 of 20
#    with 1; ranks stuck in different collectives, a message never
#    delivered; cf. open-mpi/ompi#8498), and never hung with one rank per host;
#  - pml ob1 without ucx: starts faster, and keeps UCX off these links;
#  - --bind-to none: the hosts' "cores" are the same two cores.
# The settings are given as OMPI_MCA_* variables unless already set, so that
# they can be changed either way: OMPI_MCA_btl_tcp_links=1 in the environment,
# or --mca btl_tcp_links 1 among the arguments (the command line wins; mpirun
# refuses a parameter named twice on its command line). The environment
# reaches every host: netns_agent.sh keeps it. Other arguments (-x, --host,
# -np, the program) go to mpirun unchanged.
here=$(cd "$(dirname "$0")" && pwd)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_plm_rsh_agent="$here/netns_agent.sh"
export OMPI_MCA_pml="${OMPI_MCA_pml:-ob1}"
export OMPI_MCA_osc="${OMPI_MCA_osc:-^ucx}"
export OMPI_MCA_btl="${OMPI_MCA_btl:-self,vader,tcp}"
export OMPI_MCA_btl_tcp_if_include="${OMPI_MCA_btl_tcp_if_include:-10.99.0.0/24}"
export OMPI_MCA_oob_tcp_if_include="${OMPI_MCA_oob_tcp_if_include:-10.99.0.0/24}"
export OMPI_MCA_mpi_yield_when_idle="${OMPI_MCA_mpi_yield_when_idle:-1}"
export OMPI_MCA_btl_tcp_links="${OMPI_MCA_btl_tcp_links:-2}"
export OMPI_MCA_hwloc_base_binding_policy="${OMPI_MCA_hwloc_base_binding_policy:-none}"
ip netns list | cut -d' ' -f1 | grep -qx h1 ||
    { echo "netns_mpirun: no host h1: start the cluster with scripts/netns_up.sh" >&2; exit 1; }
exec ip netns exec h1 unshare --uts sh -c 'hostname h1; exec "$@"' sh mpirun "$@"
