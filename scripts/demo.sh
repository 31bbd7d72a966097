#!/bin/sh
# The main job end to end on an embedded default (make demo):
# synth 1M PUMS-like person records -> prep (unemployment task) -> quality
# report; then, where the training commands exist, DP-SGD at epsilon = 1,
# delta = 1e-5 beside the non-private baseline, and eval.
set -e
DPSGD=${1:-build/dpsgd}
OUT=${DEMO_OUT:-demo-out}
ROWS=${DEMO_ROWS:-1000000}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mkdir -p "$OUT"
echo "== dpsgd synth: $ROWS person records (ACS PUMS 2023 person-file columns)"
"$DPSGD" synth --rows "$ROWS" --seed 1 --force -o "$OUT/persons.csv.gz"
echo
echo "== dpsgd prep: unemployment task (people in the labour force; label ESR = 3)"
"$DPSGD" prep "$OUT/persons.csv.gz" -o "$OUT/dataset" --task unemployment --seed 1 --force
echo
echo "== dpsgd train: DP-SGD at epsilon = 1, delta = 1e-5, and the same network without privacy"
TRAIN_OPTS="--epochs 5 --batch-size 1024 --optimizer momentum --lr 0.1 --momentum 0.9 --seed 1 --force"
"$DPSGD" train "$OUT/dataset" -o "$OUT/run-eps1" --target-epsilon 1 --target-delta 1e-5 $TRAIN_OPTS
"$DPSGD" train "$OUT/dataset" -o "$OUT/run-nodp" --no-dp $TRAIN_OPTS
echo
echo "== dpsgd eval: epsilon = 1 (privacy spent: $OUT/run-eps1/privacy.json)"
"$DPSGD" eval "$OUT/run-eps1" "$OUT/dataset"
echo
echo "== dpsgd eval: non-private baseline (--no-dp)"
"$DPSGD" eval "$OUT/run-nodp" "$OUT/dataset"
"$DPSGD" report "$OUT/run-eps1" -o "$OUT/report-eps1.html" --force
echo
echo "report: $OUT/report-eps1.html"
