#!/bin/sh
# bench/scaling.sh [BUILD] [--json]: data-parallel scaling on this machine
# (issue 4, bench/scaling). Writes a 1M-row synthetic dataset (D = 89, the
# width of prep's unemployment task) to /dev/shm once, then, in ROUNDS rounds
# (default 3) that alternate the configurations so that load from other
# processes hits them alike, runs build/bench/scaling (bench/scaling.c):
#   R=1 bound    mpirun -np 1: one core (Open MPI binds the rank), like the
#                GEMM reference; the noise thread shares that core
#   R=1 free     without mpirun: the noise thread may use the second core
#   R=2          mpirun -np 2: one core per rank (the noise thread shares it)
# each with one BLAS and one OpenMP thread per rank, allreduce mpi, owner
# noise, fused and --overlap; then R=2 with naive, ring and tree once each.
# Prints the medians, the speedups (epoch time of R=1 over R=2) of DP-SGD and
# of the step's matrix products alone (the machine's limit), and their ratio;
# --json prints one JSON object instead.
set -eu
BUILD=${1:-build}
JSON=0
[ "${2:-}" = --json ] && JSON=1
[ "${1:-}" = --json ] && { BUILD=build; JSON=1; }
B="$BUILD/bench/scaling"
[ -x "$B" ] || { echo "bench/scaling.sh: $B not built (cmake --build $BUILD --target bench_scaling)" >&2; exit 1; }
DATA=${SCALING_DATA:-/dev/shm/dpsgd-scaling-1m}
ROUNDS=${ROUNDS:-3}
REPS=${REPS:-3}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
MPI="mpirun --mca btl self,vader --mca pml ob1 --mca osc ^ucx"
[ -f "$DATA/meta.json" ] || "$B" --make "$DATA" --rows 1000000 --d 89
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
load() { cut -d' ' -f1 /proc/loadavg; }
echo "load before: $(load)" >&2
for i in $(seq "$ROUNDS"); do
    $MPI -np 1 "$B" --dir "$DATA" --reps "$REPS" --overlap-too --json | sed 's/^{/{"config": "R1-bound", /' >>"$OUT"
    "$B" --dir "$DATA" --reps "$REPS" --json | sed 's/^{/{"config": "R1-free", /' >>"$OUT"
    $MPI -np 2 "$B" --dir "$DATA" --reps "$REPS" --overlap-too --json | sed 's/^{/{"config": "R2", /' >>"$OUT"
done
for a in naive ring tree; do
    $MPI -np 2 "$B" --dir "$DATA" --reps "$REPS" --allreduce $a --json | sed "s/^{/{\"config\": \"R2-$a\", /" >>"$OUT"
done
echo "load after: $(load)" >&2
/usr/bin/python3 - "$OUT" "$JSON" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def med(config, key):
    v = [r[key] for r in rows if r["config"] == config and key in r]
    return statistics.median(v) if v else float("nan")
res = {c: {k: med(c, k) for k in ("gemm_s", "epoch_s", "epoch_overlap_s", "epoch_cpu_s",
                                  "epoch_over_gemm")}
       for c in ("R1-bound", "R1-free", "R2", "R2-naive", "R2-ring", "R2-tree")}
r2 = [r for r in rows if r["config"] == "R2"]
steps = {k: statistics.median([r["step_us"][k] for r in r2]) for k in r2[0]["step_us"]}
limit = res["R1-bound"]["gemm_s"] / res["R2"]["gemm_s"]
sp_bound = res["R1-bound"]["epoch_s"] / res["R2"]["epoch_s"]
sp_free = res["R1-free"]["epoch_s"] / res["R2"]["epoch_s"]
out = {"rows": r2[0]["rows"], "d": r2[0]["d"], "batch": r2[0]["batch"], "steps": r2[0]["steps"],
       "results": res, "r2_step_us": steps, "gemm_speedup": limit,
       "dpsgd_speedup_vs_bound": sp_bound, "dpsgd_speedup_vs_free": sp_free,
       "fraction_of_limit": sp_bound / limit,
       # the same ratio from pairs measured in one repetition (robust to load that
       # changes between repetitions): (T_dp / T_gemm at R = 1) / (the same at R = 2)
       "fraction_of_limit_paired": res["R1-bound"]["epoch_over_gemm"] / res["R2"]["epoch_over_gemm"],
       "overlap_over_fused_r2": res["R2"]["epoch_overlap_s"] / res["R2"]["epoch_s"]}
if sys.argv[2] == "1":
    print(json.dumps(out))
    sys.exit(0)
print("epoch of %d steps, %d rows, D=%d, expected batch %g (medians of rounds x reps)" %
      (out["steps"], out["rows"], out["d"], out["batch"]))
print("%-10s %10s %10s %12s %10s %12s" % ("config", "gemm s", "dp-sgd s", "overlap s", "cpu s", "dp/gemm"))
for c, v in res.items():
    print("%-10s %10.3f %10.3f %12.3f %10.3f %12.3f" % (c, v["gemm_s"], v["epoch_s"], v["epoch_overlap_s"],
                                                       v["epoch_cpu_s"], v["epoch_over_gemm"]))
print("R=2 rank 0 per step (us): " + ", ".join("%s %.1f" % kv for kv in steps.items()))
print("speedup of the matrix products alone (the limit): %.3f" % limit)
print("speedup of DP-SGD, R=1 bound to one core:         %.3f  (%.1f%% of the limit)" % (sp_bound, 100 * sp_bound / limit))
print("the same from per-repetition pairs (dp/gemm at R=1 over R=2): %.1f%% of the limit" % (100 * out["fraction_of_limit_paired"]))
print("speedup of DP-SGD, R=1 free (noise on core 2):    %.3f" % sp_free)
print("overlap / fused at R=2:                           %.3f" % out["overlap_over_fused_r2"])
EOF
