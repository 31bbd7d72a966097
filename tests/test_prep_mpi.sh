#!/bin/sh
# test_prep_mpi.sh: distributed prep (`mpirun -np R dpsgd prep`, issue 4
# "Distributed prep"): for R = 1..4 the dataset directory equals the one-
# process one byte for byte (every .npy with cmp; meta.json with its "run"
# object, the only run-specific part (ranks, threads, timings), removed):
#   1. synth files (damaged rows, duplicates) for the unemployment and
#      employment tasks with --stats public and exact (and dp, seeded);
#   2. the same file with its data lines twice (every duplicate across
#      ranks), CRLF line ends, and gzip (read by rank 0 alone);
#   3. a hand-made header-less file for a custom task whose quoted fields
#      (commas, doubled quotes, line ends) hold most bytes, so the ranks'
#      byte offsets fall inside quotes; inferred numeric and categorical
#      columns, NA tokens, exact medians and modes;
#   4. a file so small that some ranks get no records (R = 4);
#   5. bad input under mpirun: one line, exit 1, nothing left behind, and for
#      a fatal error in a later rank's range the one-process message.
# ctest sets $DPSGD=<build>/dpsgd. Settings from ../shared/probes/mpi/FINDINGS.md.
set -u
: "${DPSGD:?DPSGD must point at <build>/dpsgd}"
PY=/usr/bin/python3
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
MPI="mpirun --oversubscribe --mca btl self,vader --mca pml ob1 --mca osc ^ucx"
T=$(mktemp -d /tmp/dpsgd-prep-mpi-XXXXXX)
trap 'rm -rf "$T"' EXIT
failed=0
fail() { echo "test_prep_mpi: FAILED: $*" >&2; failed=1; }

# same DIR1 DIR2: the same files, .npy byte for byte, meta.json but for "run"
same() {
    $PY - "$1" "$2" <<'EOF' || fail "$2 differs from $1"
import json, os, sys
a, b = sys.argv[1], sys.argv[2]
fa, fb = sorted(os.listdir(a)), sorted(os.listdir(b))
if fa != fb:
    sys.exit("files differ: %s vs %s" % (fa, fb))
for f in fa:
    if f.endswith(".npy") and open(os.path.join(a, f), "rb").read() != open(os.path.join(b, f), "rb").read():
        sys.exit("%s differs" % f)
ma, mb = (json.load(open(os.path.join(d, "meta.json"))) for d in (a, b))
if list(ma)[-1] != "run" or list(mb)[-1] != "run":
    sys.exit("meta.json does not end with its \"run\" object")
ra, rb = ma.pop("run"), mb.pop("run")
if ma != mb:
    for k in ma:
        if ma[k] != mb.get(k):
            print("meta.json %s: %s\n  vs %s" % (k, ma[k], mb.get(k)))
    sys.exit("meta.json differs")
if rb["ranks"] < 1 or "read_parse_validate" not in rb["seconds_by_phase"]:
    sys.exit("meta.json run: %s" % rb)
EOF
}

# check INPUT NAME [prep options]: one process, then R = 1..4 under mpirun
check() {
    in="$1"; name="$2"; shift 2
    timeout 120 "$DPSGD" prep "$in" -o "$T/$name.1p" --quiet "$@" </dev/null 2>"$T/err" ||
        { cat "$T/err"; fail "$name: one process"; return; }
    for np in ${NPS:-1 2 3 4}; do
        timeout 120 $MPI -np $np "$DPSGD" prep "$in" -o "$T/$name.$np" --quiet "$@" </dev/null \
            2>"$T/err" || { cat "$T/err"; fail "$name: $np ranks"; continue; }
        # warnings (NOT PRIVATE with --stats exact) once, from rank 0
        [ "$(grep -c 'warning' "$T/err")" -le 1 ] && ! grep -q 'rank [1-9]' "$T/err" ||
            { cat "$T/err"; fail "$name: $np ranks: ranks other than 0 printed"; }
        same "$T/$name.1p" "$T/$name.$np"
        grep -q "\"ranks\":[[:space:]]*$np" "$T/$name.$np/meta.json" || fail "$name: ranks $np not recorded"
    done
    [ $failed = 0 ] && echo "$name: R = ${NPS:-1 2 3 4} equal one process"
}

echo "== 1. synth files, two tasks, public and exact statistics"
"$DPSGD" synth --rows 30000 --seed 5 -o "$T/a.csv" 2>/dev/null || exit 1
check "$T/a.csv" unemp --task unemployment
check "$T/a.csv" unemp-x --task unemployment --stats exact --seed 3
check "$T/a.csv" emp --task employment --split 0.7,0.2,0.1
check "$T/a.csv" emp-x --task employment --stats exact
# --stats dp with a seeded key: the noisy histograms of all ranks' rows, the same release
NPS="2 4" check "$T/a.csv" unemp-dp --stats dp --seed 3
# the same rows with --threads 2 in one process
"$DPSGD" prep "$T/a.csv" -o "$T/unemp.t2" --quiet --threads 2 --task unemployment 2>/dev/null ||
    fail "threads 2"
same "$T/unemp.1p" "$T/unemp.t2"

echo "== 2. every data line twice, CRLF, gzip"
{ cat "$T/a.csv"; tail -n +2 "$T/a.csv"; } >"$T/twice.csv"
check "$T/twice.csv" twice --stats exact
# the second copy adds one duplicate per row kept from the first (and repeats its duplicates)
$PY - "$T/unemp.1p/meta.json" "$T/twice.3/meta.json" <<'EOF' || fail "twice: the second copy was not dropped"
import json, sys
a, b = (json.load(open(p))["report"] for p in sys.argv[1:])
want = 2 * a["dropped"]["duplicate_key"] + a["rows_kept"]
sys.exit(b["rows_kept"] != a["rows_kept"] or b["dropped"]["duplicate_key"] != want)
EOF
sed 's/$/\r/' "$T/a.csv" >"$T/crlf.csv"
NPS="2 4" check "$T/crlf.csv" crlf --task employment --stats exact
gzip -c "$T/a.csv" >"$T/a.csv.gz"
NPS="2 3" check "$T/a.csv.gz" gz --stats exact
grep -q 'rank 0 alone' "$T/gz.2/meta.json" || fail "gz: not read by rank 0 alone"

echo "== 3. custom task, header-less file, quoted fields across the ranks' offsets"
$PY - "$T/custom.csv" <<'EOF'
import random, sys
rng = random.Random(11)
words = ["alpha", "beta", "gamma, delta", 'say ""hi""', "line\nbreak", "x\r\ny", "  padded  "]
out = []
for i in range(1500):
    note = " ".join(rng.choice(words) for _ in range(rng.randint(5, 40)))
    age = rng.choice([str(rng.randint(16, 90)), "NA", ""]) if rng.random() < 0.1 else str(rng.randint(16, 90))
    color = rng.choice(["red", "green", "blue", "NA", "dark red"])
    score = rng.choice(["%.3f" % rng.uniform(-5, 5), "-0", "0", "1e3", "NA", "7"])
    label = rng.choice(["yes", "no", "no", "maybe"])
    row = '%s,"%s",%s,%s,%s' % (age, note, color, score, label)
    if rng.random() < 0.02:
        row += ",extra"              # ragged
    if rng.random() < 0.01:
        row = row.replace(",", ',"x"y,', 1)  # malformed quoting
    out.append(row + ("\r\n" if rng.random() < 0.5 else "\n"))
    if rng.random() < 0.03:
        out.append("\n")             # blank line
open(sys.argv[1], "w", newline="").write("".join(out))
EOF
COPTS="--columns age,note,color,score,label --target label --positive yes --features age,color,score --na NA"
check "$T/custom.csv" custom $COPTS
check "$T/custom.csv" custom-x $COPTS --stats exact --population yes,no --split 0.6,0.3,0.1 --seed 9

echo "== 4. a file too small for four ranks"
head -n 4 "$T/a.csv" >"$T/tiny.csv"
NPS="4" check "$T/tiny.csv" tiny --task employment --stats exact

echo "== 5. bad input: one line, exit 1, nothing left behind"
bad() { # name, expected text, then the prep arguments
    name="$1"; want="$2"; shift 2
    timeout 120 "$DPSGD" prep -o "$T/$name.out1" "$@" </dev/null >/dev/null 2>"$T/$name.err1"
    rc1=$?
    for np in 2 4; do
        timeout 120 $MPI -np $np "$DPSGD" prep -o "$T/$name.out$np" "$@" </dev/null \
            >"$T/$name.stdout" 2>"$T/$name.err$np"
        rc=$?
        [ $rc -eq 1 ] && [ $rc1 -eq 1 ] || fail "$name np $np: exit $rc (one process $rc1)"
        [ "$(grep -c '^dpsgd prep' "$T/$name.err$np")" = 1 ] ||
            { cat "$T/$name.err$np"; fail "$name np $np: not one line"; }
        grep -q -- "$want" "$T/$name.err$np" || { cat "$T/$name.err$np"; fail "$name np $np: message"; }
        # the message is the one-process message, with the rank that found it
        one=$(grep '^dpsgd prep' "$T/$name.err1" | sed 's/^dpsgd prep: error: //')
        grep '^dpsgd prep' "$T/$name.err$np" | sed 's/^dpsgd prep \[rank 0\]: error: rank [0-9]*: //' |
            grep -qxF -- "$one" || { cat "$T/$name.err1" "$T/$name.err$np"; fail "$name np $np: not the one-process message"; }
        [ ! -e "$T/$name.out$np" ] || fail "$name np $np: output left behind"
    done
    ls "$T" | grep -q '\.tmp-' && fail "$name: a temporary directory was left behind"
    echo "$name: one line, exit 1 ($(grep '^dpsgd prep' "$T/$name.err4" | cut -c1-110))"
}
bad missing "cannot open" "$T/no-such.csv"
bad header "missing column" "$T/a.csv" --target NOSUCH --positive 1 --features AGEP
# a NUL byte in the last quarter: found by the last rank, as one process finds it
$PY - "$T/a.csv" "$T/nul.csv" <<'EOF'
import sys
b = open(sys.argv[1], "rb").read()
i = b.index(b"\n", len(b) * 7 // 8) + 5
open(sys.argv[2], "wb").write(b[:i] + b"\0" + b[i + 1:])
EOF
bad nul "NUL byte" "$T/nul.csv"
printf 'a,"b\n' >>"$T/tiny.csv"
bad quote "unterminated quoted field" "$T/tiny.csv" --task employment
mkdir "$T/exists"
bad exists "already exists" "$T/a.csv" -o "$T/exists"
exit $failed
