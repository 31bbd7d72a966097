#!/bin/sh
# allreduce.sh: runs build/bench/allreduce under mpirun for R = 2 and 4, over
# shared memory (vader) and over TCP forced onto loopback, and prints the four
# tables. Usage: bench/allreduce.sh [BUILD_DIR [OUT_DIR]]; extra arguments for
# the benchmark in $ALLREDUCE_ARGS (e.g. "--reps-scale 2 --max-bytes 1048576").
# With OUT_DIR, each run's table and JSON go to OUT_DIR/allreduce-<R>-<net>.{txt,json}.
# Settings from ../shared/probes/mpi/FINDINGS.md: as root the OMPI_ALLOW_*
# pair, --oversubscribe for 4 ranks on 2 cores, pml ob1 without ucx.
set -eu
build="${1:-build}"
out="${2:-}"
set -- ${ALLREDUCE_ARGS:-}
bin="$build/bench/allreduce"
[ -x "$bin" ] || { echo "allreduce.sh: $bin not built (make, or cmake --build $build)" >&2; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
common="--oversubscribe --mca pml ob1 --mca osc ^ucx"
for np in 2 4; do
    for net in shm tcp; do
        if [ "$net" = shm ]; then
            btl="--mca btl self,vader"
        else
            btl="--mca btl self,tcp --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo"
        fi
        echo "== mpirun -np $np $common $btl $bin --label $net $*"
        if [ -n "$out" ]; then
            mkdir -p "$out"
            mpirun -np "$np" $common $btl "$bin" --label "$net" \
                --json-file "$out/allreduce-$np-$net.json" "$@" | tee "$out/allreduce-$np-$net.txt"
        else
            mpirun -np "$np" $common $btl "$bin" --label "$net" "$@"
        fi
        echo
    done
done
