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
