#!/bin/sh
# bench/prep_dist.sh: distributed prep (`mpirun -np 2 dpsgd prep`) beside one
# process on the 1M-row full-width synth file, N rounds of four runs in turn:
# wall (MPI start-up included), CPU (user + system of all processes) and
# meta.json's own clock and phases (run.seconds, run.seconds_by_phase).
# Results and their reading: bench/RESULTS.md, "prep, distributed".
# usage: [DPSGD=build/dpsgd] [N=6] [F=/tmp/distprep-1m.csv] sh bench/prep_dist.sh
set -u
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
D=${DPSGD:-build/dpsgd}
F=${F:-/tmp/distprep-1m.csv}
OUT=$(mktemp -d /tmp/prep-dist-bench-XXXXXX)
trap 'rm -rf "$OUT"' EXIT
MPI="mpirun --mca btl self,vader --mca pml ob1 --mca osc ^ucx"
[ -f "$F" ] || "$D" synth --rows 1000000 --seed 1 -o "$F" 2>/dev/null || exit 1
cat "$F" >/dev/null # page cache warm
one() { # label, launcher words ("-" for none), prep options...
    label=$1; launch=$2; shift 2
    [ "$launch" = - ] && launch=
    /usr/bin/time -f "%e %U %S" -o "$OUT/time" $launch "$D" prep "$F" -o "$OUT/ds" --force \
        --quiet "$@" || exit 1
    set -- $(cat "$OUT/time")
    rs=$(/usr/bin/python3 -c "import json,sys; r=json.load(open(sys.argv[1]))['run']; \
p=r['seconds_by_phase']; print('%.3f | %.3f | %.3f | %.3f' % (r['seconds'], \
p['read_parse_validate'], p['combine_impute_split_encode'], p['write_arrays']))" "$OUT/ds/meta.json")
    echo "| $label | $1 | $(echo "$2 + $3" | bc) | $rs | $(cut -d' ' -f1 /proc/loadavg) |"
}
echo "| run | wall s | CPU s | run.seconds | parse | combine+encode | write | load |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for i in $(seq "${N:-6}"); do
    one "R=1, 2 threads (default)" -
    one "R=1, --threads 1" - --threads 1
    one "R=2, mpirun --bind-to none -np 2" "$MPI --bind-to none -np 2"
    one "R=2, mpirun -np 2" "$MPI -np 2"
done
