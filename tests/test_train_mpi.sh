#!/bin/sh
# test_train_mpi.sh: data-parallel training (`mpirun -np R dpsgd train`,
# issue 4 "Training") on a small dataset written by tests/mpi/make_dataset.py:
#   1. with --noise-multiplier 0 and a seed, the models of R = 2, 3, 4 and
#      every algorithm (fused and --overlap) equal the one-process model to
#      1e-5 relative; with owner noise too (the same noise vector for any R),
#      and with --no-dp (division by the batch realised over all ranks);
#   2. naive and ring (and tree) give the same bits run to run;
#   3. the total noise per coordinate has variance sigma^2 C^2 for R = 1..4 in
#      both noise modes (tests/mpi/noise_check.c, a chi-square test that also
#      rejects sqrt(R) sigma C and sigma C / sqrt(R));
#   4. a rank killed mid-run (kill -9 from outside, and rank 1 raising SIGKILL
#      at a step) ends the job with a non-zero status within seconds; --resume
#      completes the run, bit for bit the uninterrupted one, and also resumes
#      on another number of ranks;
#   5. a rank whose shard is unreadable (a bad label in the last rows) makes
#      the job exit promptly with that rank's message, printed once;
#   6. a parameter mismatch between ranks stops the job naming the step;
#   7. only rank 0 writes the run directory and the progress.
# ctest sets $DPSGD=<build>/dpsgd. Settings from ../shared/probes/mpi/FINDINGS.md.
set -u
: "${DPSGD:?DPSGD must point at <build>/dpsgd}"
SRC=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
check="$(dirname "$DPSGD")/tests/noise_check"
[ -x "$check" ] || { echo "test_train_mpi: $check not built" >&2; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
MPI="mpirun --oversubscribe --mca btl self,vader --mca pml ob1 --mca osc ^ucx"
T=$(mktemp -d /tmp/dpsgd-train-mpi-XXXXXX)
trap 'rm -rf "$T"' EXIT
failed=0
fail() { echo "test_train_mpi: FAILED: $*" >&2; failed=1; }
now() { date +%s.%N; }
elapsed() { echo "$(now) - $1" | bc; }

$PY "$SRC/mpi/make_dataset.py" "$T/ds" 6000 10 11 || exit 1
$PY "$SRC/mpi/make_dataset.py" "$T/nds" 2000 6 12 || exit 1
$PY "$SRC/mpi/make_dataset.py" "$T/bad" 6000 10 11 --bad-label-row 5990 || exit 1
OPTS="--epochs 2 --batch-size 200 --lr 0.5 --seed 7 --threads 1 --quiet"
train1() { # one process: run dir, options
    out="$1"; shift
    timeout 120 "$DPSGD" train "$T/ds" -o "$T/$out" $OPTS "$@" </dev/null
}
trainR() { # ranks, run dir, options
    np="$1"; out="$2"; shift 2
    timeout 120 $MPI -np "$np" "$DPSGD" train "$T/ds" -o "$T/$out" $OPTS "$@" </dev/null
}
same() { # --rel X | --exact, reference run, other runs
    mode="$1"; shift
    [ "$mode" = --rel ] && { mode="--rel $1"; shift; }
    ref="$1"; shift
    files=""
    for r in "$@"; do files="$files $T/$r/model.safetensors"; done
    $PY "$SRC/mpi/compare_models.py" $mode "$T/$ref/model.safetensors" $files || fail "models differ from $ref"
}

echo "== 1. R = 1..4, every algorithm: the same model to 1e-5 (no noise; then owner noise)"
train1 z1 --noise-multiplier 0 || fail "one process"
runs=""
for np in 2 3 4; do
    for a in mpi naive ring tree; do
        trainR $np "z$np$a" --noise-multiplier 0 --allreduce $a || fail "np $np $a"
        runs="$runs z$np$a"
    done
    trainR $np "z${np}ov" --noise-multiplier 0 --allreduce ring --overlap || fail "np $np overlap"
    runs="$runs z${np}ov"
done
same --rel 1e-5 z1 $runs
train1 n1 --noise-multiplier 1.2 || fail "one process, noise"
trainR 3 n3 --noise-multiplier 1.2 --allreduce tree || fail "np 3 noise"
trainR 4 n4 --noise-multiplier 1.2 --allreduce naive --overlap || fail "np 4 noise overlap"
same --rel 1e-5 n1 n3 n4
# --no-dp divides by the realised batch: summed over the ranks
train1 nd1 --no-dp || fail "one process, no-dp"
trainR 3 nd3 --no-dp --allreduce tree || fail "np 3 no-dp"
same --rel 1e-5 nd1 nd3

echo "== 2. naive, ring and tree: the same bits run to run"
for a in naive ring tree; do
    trainR 3 "d$a" --noise-multiplier 1.2 --allreduce $a || fail "np 3 $a again"
    trainR 3 "e$a" --noise-multiplier 1.2 --allreduce $a || fail "np 3 $a again"
    same --exact "d$a" "e$a"
done
trainR 2 dsh --noise-multiplier 1.2 --allreduce ring --noise-mode shares || fail "shares"
trainR 2 esh --noise-multiplier 1.2 --allreduce ring --noise-mode shares || fail "shares"
same --exact dsh esh

echo "== 3. noise: variance sigma^2 C^2 per coordinate for every R, both modes"
for np in 1 2 3 4; do
    for m in owner shares; do
        timeout 120 $MPI -np $np "$check" "$T/nds" $m </dev/null || fail "noise np $np $m"
        [ $np = 1 ] && continue
        for f in "$(echo "sqrt($np)" | bc -l)" "$(echo "1/sqrt($np)" | bc -l)"; do
            if timeout 120 $MPI -np $np "$check" "$T/nds" $m --scale "$f" --no-exact \
                </dev/null >"$T/neg.txt" 2>&1; then
                cat "$T/neg.txt"
                fail "noise np $np $m: variance x$f^2 was not rejected"
            fi
        done
    done
done
timeout 120 $MPI -np 3 "$check" "$T/nds" owner --overlap --algo ring </dev/null || fail "noise overlap owner"
timeout 120 $MPI -np 3 "$check" "$T/nds" shares --overlap --algo naive </dev/null || fail "noise overlap shares"

echo "== 4. a killed rank ends the job within seconds; --resume completes it"
KOPTS="--noise-multiplier 1.2 --allreduce ring --checkpoint-every 5"
trainR 2 full $KOPTS || fail "uninterrupted run"
t0=$(now)
DPSGD_TEST_KILL_AFTER_STEP=23 DPSGD_TEST_KILL_RANK=1 trainR 2 killed $KOPTS 2>"$T/kill.txt"
rc=$?
dt=$(elapsed "$t0")
echo "rank 1 raised SIGKILL after step 23: exit $rc after $dt s"
[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "killed job: exit $rc"
[ "$(echo "$dt < 15" | bc)" = 1 ] || fail "killed job took $dt s"
timeout 120 $MPI -np 2 "$DPSGD" train "$T/ds" -o "$T/killed" --resume --threads 1 --quiet \
    </dev/null || fail "resume on 2 ranks"
same --exact full killed
cp -r "$T/killed" "$T/killed3"
DPSGD_TEST_KILL_AFTER_STEP=13 DPSGD_TEST_KILL_RANK=0 trainR 2 killed3x $KOPTS 2>/dev/null
# resumed on 3 ranks and with another allreduce (a placement option --resume applies)
timeout 120 $MPI -np 3 "$DPSGD" train "$T/ds" -o "$T/killed3x" --resume --allreduce tree \
    --threads 1 </dev/null 2>"$T/resume3.txt" || fail "resume on 3 ranks"
grep -q "on cpu" "$T/resume3.txt" || fail "resume note: $(cat "$T/resume3.txt")"
grep -q '"allreduce":"tree"' "$T/killed3x/checkpoint.ckpt" || fail "--allreduce tree not applied"
same --rel 1e-5 full killed3x
# kill -9 of one rank from outside, mid-run
$MPI -np 2 "$DPSGD" train "$T/ds" -o "$T/ext" --noise-multiplier 1 --seed 1 --threads 1 --quiet \
    --steps 1000000 --batch-size 200 --checkpoint-every 20 </dev/null 2>"$T/ext.txt" &
job=$!
i=0
while [ ! -f "$T/ext/checkpoint.ckpt" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
victim=$(ps -o pid= --ppid $job | tail -n 1 | tr -d ' ')
t0=$(now)
[ -n "$victim" ] && kill -9 "$victim"
wait $job
rc=$?
dt=$(elapsed "$t0")
echo "kill -9 of rank pid $victim: exit $rc after $dt s"
[ -n "$victim" ] && [ $rc -ne 0 ] || fail "kill -9 of a rank: exit $rc"
[ "$(echo "$dt < 15" | bc)" = 1 ] || fail "kill -9 of a rank: the job took $dt s to end"

echo "== 5. a rank whose shard is unreadable: the job exits at once with its message"
for np in 1 2 3; do
    t0=$(now)
    timeout 120 $MPI -np $np "$DPSGD" train "$T/bad" -o "$T/badrun$np" --noise-multiplier 1 \
        --threads 1 --quiet </dev/null 2>"$T/bad.txt"
    rc=$?
    dt=$(elapsed "$t0")
    cat "$T/bad.txt"
    last=$((np - 1))
    [ $rc -eq 1 ] || fail "bad shard np $np: exit $rc"
    [ "$(grep -c 'label 7' "$T/bad.txt")" = 1 ] || fail "bad shard np $np: one line naming the label"
    [ $np = 1 ] || grep -q "rank $last: .*row 5990" "$T/bad.txt" || fail "bad shard np $np: rank $last named"
    [ ! -e "$T/badrun$np" ] || fail "bad shard np $np: the run directory was left behind"
    [ "$(echo "$dt < 15" | bc)" = 1 ] || fail "bad shard np $np took $dt s"
done

echo "== 6. parameters that differ between ranks stop the job, naming the step"
DPSGD_TEST_CORRUPT=1:7 trainR 2 corrupt --noise-multiplier 1 --check-every 5 2>"$T/cor.txt"
rc=$?
cat "$T/cor.txt"
[ $rc -eq 2 ] || fail "checksum: exit $rc"
grep -q "step 10: the parameters differ between the ranks" "$T/cor.txt" || fail "checksum message"
[ "$(grep -c 'differ' "$T/cor.txt")" = 1 ] || fail "checksum: printed once"

echo "== 7. rank 0 alone writes and reports"
timeout 120 $MPI -np 3 "$DPSGD" train "$T/ds" -o "$T/talk" --noise-multiplier 1 --seed 3 \
    --epochs 1 --batch-size 200 --threads 1 </dev/null >"$T/talk.out" 2>"$T/talk.txt" ||
    fail "np 3 with progress"
grep -q "rank [12]" "$T/talk.txt" && fail "ranks 1 and 2 printed"
grep -q "step 30/30" "$T/talk.txt" || fail "progress of rank 0"
[ "$(grep -c 'trained 30 steps' "$T/talk.txt")" = 1 ] || fail "summary printed once"
for f in model.safetensors privacy.json metrics.jsonl checkpoint.ckpt command.txt; do
    [ -s "$T/talk/$f" ] || fail "missing $f"
done
grep -q '"ranks":[[:space:]]*3' "$T/talk/privacy.json" || fail "privacy.json: ranks"
exit $failed
