#!/bin/sh
# hosts.sh: the allreduce benchmark (build/bench/allreduce) with its ranks on
# separate emulated hosts: 2 and 4 network namespaces of scripts/netns_up.sh,
# one rank each, every host's link limited to RATE (default 1gbit) by tbf,
# started through scripts/netns_mpirun.sh. Sizes 1 KiB .. 16 MiB, algorithms
# mpi, naive, ring, tree. Prints each run's table, then one table of both
# (median time and bus bandwidth) in Markdown for bench/RESULTS.md.
# usage: bench/hosts.sh [BUILD_DIR [OUT_DIR]]     (root; default OUT_DIR BUILD_DIR/hosts)
#   RATE=10gbit bench/hosts.sh build    another link rate; RATE=none: no limit
# Writes OUT_DIR/hosts-<R>.{txt,json}. Brings the cluster up and always down.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-build}" && pwd)
out=${2:-$build/hosts}
rate=${RATE:-1gbit}
bin=$build/bench/allreduce
[ -x "$bin" ] || { echo "hosts.sh: $bin not built (make, or cmake --build $build)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "hosts.sh: must run as root (it creates network namespaces)" >&2; exit 1; }
mkdir -p "$out"
echo "hosts.sh: $(uptime | sed 's/.*load/load/') (other work on these 2 cores slows every figure)"
out=$(cd "$out" && pwd)
[ "$rate" = none ] && rate=
sh "$here/scripts/netns_up.sh" -n 4 ${rate:+-r "$rate"}
trap 'sh "$here/scripts/netns_down.sh" -n 4' EXIT
trap 'exit 130' INT TERM HUP
for spec in "h1,h2 2" "h1,h2,h3,h4 4"; do
    hosts=${spec% *}
    np=${spec#* }
    echo "== scripts/netns_mpirun.sh --host $hosts -np $np $bin --max-bytes 16777216" \
        "--label ${rate:-unlimited} --json-file $out/hosts-$np.json"
    timeout 600 sh "$here/scripts/netns_mpirun.sh" --host "$hosts" -np "$np" "$bin" \
        --max-bytes 16777216 --label "${rate:-unlimited}" --json-file "$out/hosts-$np.json" \
        </dev/null | tee "$out/hosts-$np.txt"
    echo
done
/usr/bin/python3 - "$out/hosts-2.json" "$out/hosts-4.json" <<'PY' | tee "$out/hosts.md"
# Markdown, a table per R: a row per size; per algorithm "median (min) ms, busbw
# GB/s of the median"; then the alpha-beta(-gamma) model's time for naive,
# ring and tree (bench/allreduce's predict(): alpha and beta from its ping-pong)
import json, sys
res = []
for path in sys.argv[1:]:
    res += json.load(open(path))["results"]
algos = ["mpi", "naive", "ring", "tree"]
cell = {(r["ranks"], r["algorithm"], r["bytes"]): r for r in res}
def size(b):
    return "%d MiB" % (b >> 20) if b >= 1 << 20 else "%d KiB" % (b >> 10)
def ms(t):
    return "%.3f" % (t * 1e3) if t < 1e-2 else "%.1f" % (t * 1e3)
for R in sorted({r["ranks"] for r in res}):
    r0 = next(x for x in res if x["ranks"] == R)
    print("\nR = %d hosts (%s); ping-pong alpha %.1f us, beta %.2f ns/B (%.3f GB/s). "
          "Cells: median (min) ms, bus bandwidth GB/s." % (R, r0["label"], r0["alpha_s"] * 1e6,
          r0["beta_s_per_byte"] * 1e9, 1e-9 / r0["beta_s_per_byte"]))
    print()
    head = ["size"] + algos + ["model " + a for a in algos[1:]]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for b in sorted({r["bytes"] for r in res if r["ranks"] == R}):
        row = [size(b)]
        for a in algos:
            r = cell.get((R, a, b))
            row.append("%s (%s), %.3f" % (ms(r["seconds"]), ms(r["seconds_min"]), r["bus_gbps"])
                       if r else "-")
        for a in algos[1:]:
            r = cell.get((R, a, b))
            row.append(ms(r["model_seconds"]) if r else "-")
        print("| " + " | ".join(row) + " |")
PY
