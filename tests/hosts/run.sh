#!/bin/sh
# tests/hosts/run.sh BUILD_DIR: `make test-hosts`, issue 4 "Ranks as separate
# hosts": MPI ranks on four emulated hosts (network namespaces h1..h4 from
# scripts/netns_up.sh, each link limited to 1 Gbit/s by tbf), started by a
# real `mpirun --host h1,...` through scripts/netns_mpirun.sh:
#   1. every rank runs on its own host (hostname, network namespace);
#   2. tests/mpi/check_allreduce (every algorithm against the exact sum)
#      passes on 2 and 4 hosts and with 2 ranks per host (vader inside a
#      host, TCP between), and its traffic crossed every host's link;
#   3. `dpsgd train` on 4 hosts with each --allreduce, without noise and
#      seeded, gives the one-process model to 1e-5 relative
#      (tests/mpi/compare_models.py, an independent safetensors reader); with
#      noise too (the owner's noise stream is independent of R);
#   4. a rank killed by SIGKILL on host h3 ends the job with a non-zero status
#      within seconds, mpirun naming rank and host, and no rank left anywhere;
#   5. the cluster is gone afterwards: no namespace of ours, no /etc/netns.
# Root only (creates namespaces); not part of `make test` (ctest runs only
# tests/*.sh, not tests/hosts/). About 20-30 s on 2 cores.
set -u
REPO=$(cd "$(dirname "$0")/../.." && pwd)
PY=/usr/bin/python3
if [ "$(id -u)" != 0 ]; then
    echo "test-hosts: must run as root (it creates network namespaces); nothing was run" >&2
    exit 1
fi
if ! command -v ip >/dev/null 2>&1 || ! ip netns list >/dev/null 2>&1 ||
    ! command -v unshare >/dev/null 2>&1; then
    echo "test-hosts: 'ip netns' or unshare is unavailable (install iproute2 and util-linux)" >&2
    exit 1
fi
B=$(cd "${1:-build}" 2>/dev/null && pwd) || { echo "test-hosts: no build directory '${1:-build}'" >&2; exit 1; }
DPSGD=$B/dpsgd
CHECK=$B/tests/check_allreduce
for f in "$DPSGD" "$CHECK"; do
    [ -x "$f" ] || { echo "test-hosts: $f not built (make)" >&2; exit 1; }
done
RUN="sh $REPO/scripts/netns_mpirun.sh -x OMP_NUM_THREADS=1 -x OPENBLAS_NUM_THREADS=1"
T=$(mktemp -d /tmp/dpsgd-hosts-XXXXXX)
up=0
cleanup() {
    [ $up = 1 ] && sh "$REPO/scripts/netns_down.sh" -n 4
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
failed=0
fail() { echo "test-hosts: FAILED: $*" >&2; failed=1; }
now() { date +%s.%N; }
elapsed() { echo "$(now) - $1" | bc; }
# bytes sent by host h<i> on its link (read inside the namespace, where sysfs is its own)
txbytes() { ip netns exec "h$1" cat "/sys/class/net/veth$1/statistics/tx_bytes"; }

echo "== 0. four hosts at 1 Gbit/s"
sh "$REPO/scripts/netns_up.sh" -n 4 -r 1gbit || exit 1
up=1
# a second cluster on top of ours is refused, and leaves ours intact
sh "$REPO/scripts/netns_up.sh" -n 4 2>/dev/null && fail "netns_up.sh over a running cluster succeeded"
[ "$(ip netns list | cut -d' ' -f1 | grep -cx 'h[1-4]\|hsw')" = 5 ] || fail "refused netns_up.sh broke the cluster"
for i in 1 2 3 4; do
    tc -n "h$i" qdisc show dev "veth$i" | grep -q "tbf.*rate 1Gbit" || fail "h$i: no tbf at 1 Gbit/s"
done

echo "== 1. one rank per host"
timeout 60 $RUN --host h1,h2,h3,h4 -np 4 sh -c \
    'echo "$OMPI_COMM_WORLD_RANK $(hostname) $(readlink /proc/self/ns/net)"' \
    </dev/null >"$T/where.txt" || fail "mpirun of sh on 4 hosts"
sort "$T/where.txt"
[ "$(sort "$T/where.txt" | cut -d' ' -f2 | tr '\n' ' ')" = "h1 h2 h3 h4 " ] ||
    fail "ranks 0..3 are not on hosts h1..h4"
[ "$(cut -d' ' -f3 "$T/where.txt" | sort -u | wc -l)" = 4 ] ||
    fail "the 4 ranks do not have 4 different network namespaces"

echo "== 2. check_allreduce on 2 hosts, 4 hosts, 2 ranks per host"
for spec in "h1,h2 2" "h1,h2,h3,h4 4" "h1:2,h2:2 4" "h1:2,h2:2,h3:2,h4:2 8"; do
    hosts=${spec% *}
    np=${spec#* }
    before=""
    for i in 1 2 3 4; do before="$before $(txbytes $i)"; done
    # several ranks per host: one TCP link per pair (scripts/netns_mpirun.sh
    # says why: Open MPI's multi-link TCP hangs now and then there)
    links=2
    case $hosts in *:*) links=1 ;; esac
    echo "-- --host $hosts -np $np (btl_tcp_links $links)"
    OMPI_MCA_btl_tcp_links=$links timeout 120 $RUN --host "$hosts" -np "$np" "$CHECK" </dev/null ||
        fail "check_allreduce --host $hosts"
    # every host of the run sent data over its own link (so the ranks really
    # talked over TCP between namespaces): >= 64 KiB each
    i=1
    for b in $before; do
        case ",$hosts," in
        *",h$i,"* | *",h$i:"*)
            sent=$(($(txbytes $i) - b))
            [ "$sent" -ge 65536 ] || fail "--host $hosts: h$i sent only $sent bytes on veth$i"
            ;;
        esac
        i=$((i + 1))
    done
done

echo "== 3. training on 4 hosts: every algorithm gives the one-process model"
"$DPSGD" synth --rows 20000 --seed 11 -o "$T/x.csv" >/dev/null 2>&1 || fail "synth"
"$DPSGD" prep "$T/x.csv" -o "$T/ds" >/dev/null 2>&1 || fail "prep"
OPTS="--epochs 2 --batch-size 400 --lr 0.5 --seed 7 --threads 1 --quiet"
"$DPSGD" train "$T/ds" -o "$T/one" $OPTS --noise-multiplier 0 2>/dev/null || fail "one process"
runs=""
for a in mpi naive ring tree; do
    timeout 120 $RUN --host h1,h2,h3,h4 -np 4 "$DPSGD" train "$T/ds" -o "$T/h4$a" $OPTS \
        --noise-multiplier 0 --allreduce "$a" </dev/null 2>"$T/h4$a.txt"
    rc=$?
    cat "$T/h4$a.txt"
    [ $rc = 0 ] || fail "train on 4 hosts, --allreduce $a: exit $rc"
    grep -q "4 ranks, .*allreduce $a," "$T/h4$a.txt" || fail "train $a: not 4 ranks with $a"
    runs="$runs $T/h4$a/model.safetensors"
done
$PY "$REPO/tests/mpi/compare_models.py" --rel 1e-5 "$T/one/model.safetensors" $runs ||
    fail "models of the 4-host runs differ from the one-process model"
# negative control: the comparison does tell models apart (another seed)
"$DPSGD" train "$T/ds" -o "$T/other" $OPTS --noise-multiplier 0 --seed 8 2>/dev/null || fail "seed 8"
$PY "$REPO/tests/mpi/compare_models.py" --rel 1e-5 "$T/one/model.safetensors" \
    "$T/other/model.safetensors" >/dev/null && fail "a model of another seed compared equal"
"$DPSGD" train "$T/ds" -o "$T/onen" $OPTS --noise-multiplier 1 2>/dev/null || fail "one process, noise"
timeout 120 $RUN --host h1,h2,h3,h4 -np 4 "$DPSGD" train "$T/ds" -o "$T/h4n" $OPTS \
    --noise-multiplier 1 --allreduce ring </dev/null 2>/dev/null || fail "train on 4 hosts with noise"
$PY "$REPO/tests/mpi/compare_models.py" --rel 1e-5 "$T/onen/model.safetensors" "$T/h4n/model.safetensors" ||
    fail "noisy 4-host model differs from the one-process model"

echo "== 4. a rank killed on host h3 ends the job within seconds"
timeout 120 $RUN --host h1,h2,h3,h4 -np 4 "$DPSGD" train "$T/ds" -o "$T/kill" \
    --noise-multiplier 1 --seed 1 --threads 1 --quiet --steps 1000000 --batch-size 200 \
    --checkpoint-every 20 </dev/null 2>"$T/kill.txt" &
job=$!
i=0
while [ ! -f "$T/kill/checkpoint.ckpt" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
victim=""
for p in $(ip netns pids h3); do
    [ "$(cat "/proc/$p/comm" 2>/dev/null)" = dpsgd ] && victim=$p
done
t0=$(now)
if [ -n "$victim" ]; then
    kill -9 "$victim"
else
    kill "$job" # no rank found: end the job rather than wait for its timeout
fi
wait $job
rc=$?
dt=$(elapsed "$t0")
echo "kill -9 of rank pid ${victim:-none} on h3: exit $rc after $dt s"
[ -n "$victim" ] || fail "no dpsgd rank found on h3"
[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "killed rank: exit $rc"
[ "$(echo "$dt < 15" | bc)" = 1 ] || fail "killed rank: the job took $dt s to end"
grep -q "rank 2 with PID ${victim:-x} on node h3 exited on signal 9" "$T/kill.txt" ||
    { cat "$T/kill.txt"; fail "mpirun did not name rank 2 on h3"; }
# the other ranks go too (zombies are reaped by PID 1 within a few seconds)
i=0
while [ $i -lt 50 ]; do
    alive=0
    for h in h1 h2 h3 h4; do
        for p in $(ip netns pids $h); do
            case "$(cat "/proc/$p/stat" 2>/dev/null)" in *") Z "*) ;; "") ;; *) alive=1 ;; esac
        done
    done
    [ $alive = 0 ] && break
    sleep 0.2
    i=$((i + 1))
done
[ $alive = 0 ] || fail "processes left in the hosts after the kill"

echo "== 5. down: nothing of the cluster is left"
sh "$REPO/scripts/netns_down.sh" -n 4 || fail "netns_down"
up=0
ip netns list | cut -d' ' -f1 | grep -qx 'h[1-4]\|hsw' && fail "namespaces left: $(ip netns list)"
[ ! -e /etc/netns/h1 ] && [ ! -e /etc/netns/hsw ] || fail "/etc/netns entries left"
[ $failed = 0 ] && echo "test-hosts: all passed" || echo "test-hosts: FAILED" >&2
exit $failed
