#!/bin/sh
# test_allreduce_mpi.sh: runs tests/mpi/check_allreduce.c (built to
# <build>/tests/check_allreduce) under mpirun with 1, 2, 3, 4 and 6 ranks over
# shared memory, 3 ranks over TCP on loopback, and 2 ranks with the latency
# injection on; fails if any run fails. ctest sets $DPSGD=<build>/dpsgd.
# Settings from ../shared/probes/mpi/FINDINGS.md: root needs the two
# OMPI_ALLOW_* variables, more ranks than cores need --oversubscribe, and
# pml ob1 without ucx starts twice as fast.
set -u
: "${DPSGD:?DPSGD must point at <build>/dpsgd}"
check="$(dirname "$DPSGD")/tests/check_allreduce"
[ -x "$check" ] || { echo "test_allreduce_mpi: $check not built" >&2; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fast="--oversubscribe --mca pml ob1 --mca osc ^ucx"
shm="--mca btl self,vader"
tcp="--mca btl self,tcp --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo"
failed=0
run() { # label, then mpirun arguments
    label="$1"; shift
    echo "== $label"
    if ! timeout 300 mpirun "$@" "$check" </dev/null; then
        echo "test_allreduce_mpi: FAILED: $label" >&2
        failed=1
    fi
}
for np in 1 2 3 4 6; do
    run "np $np, shared memory" -np "$np" $fast $shm
done
run "np 3, tcp on loopback" -np 3 $fast $tcp
run "np 2, DPSGD_COMM_DELAY_US=5" -np 2 -x DPSGD_COMM_DELAY_US=5 $fast $shm
exit $failed
