#!/bin/sh
# gpu.sh: the CUDA backend's whole check on a machine with an NVIDIA GPU, in
# one call (issue 5): build (cmake -S . -B build-gpu), the GPU checks
# (tests/gpu/check_cuda: every kernel against the CPU code, the keystream
# against libsodium, the noise against dp_noise_draw_f64, a training run
# against the CPU's), the same checks under compute-sanitizer memcheck
# (--quick sizes), and the GPU benchmark (bench/gpu_train: 1M rows, batch
# 1024 and 16384, DP vs no-DP, phases, floor). Logs and JSON go to $OUT when
# set (the device tool's folder), else build-gpu-out; a summary is
# printed last. Budget: under the device tool's 10 minutes per call even at
# worst (build ~1-1.5 min on 16 cores, then each stage under its own
# timeout: checks 120 s, memcheck 150 s, the CLI comparison 120 s, benchmark
# 120 s (it stops starting measurements at 100 s)); expected about 5 min.
#
#   sh bench/gpu.sh                 from the repository root, on the GPU machine
#
# If the machine lacks libraries dpsgd links (libsodium, OpenBLAS, cJSON,
# libzip, Open MPI, pkg-config) and the plain configure fails, the .deb files
# that `sh bench/gpu_deps.sh` downloaded beforehand (on a machine with apt)
# into .gpudeps/debs are unpacked into /tmp/dpsgd-gpudeps (outside the tree,
# so a carried .gpudeps stays ~20 MB) and used from there;
# nothing is installed system-wide. Carry .gpudeps with the call.
# Exit status: 0 all green; 77 no GPU; otherwise the first failing stage's.
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)
B=${DP_GPU_BUILD:-build-gpu}
O=${OUT:-$B-out}
mkdir -p "$O"
T0=$(date +%s)
stamp() { echo "[gpu.sh +$(($(date +%s) - T0))s] $*"; }
JOBS=$(nproc 2>/dev/null || echo 8)
export PATH="$PATH:/usr/local/cuda/bin"

stamp "device"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv 2>&1
command -v nvcc >/dev/null && nvcc --version | tail -2

# ---- dependencies from .gpudeps (only when the plain configure fails) ----
EXTRA=""
RUNLIB=""
unpack_debs() {
    R="${TMPDIR:-/tmp}/dpsgd-gpudeps"
    rm -rf "$R" && mkdir -p "$R"
    for f in "$ROOT"/.gpudeps/debs/*.deb; do
        if command -v dpkg >/dev/null; then
            dpkg -x "$f" "$R" || return 1
        else
            # no dpkg: an .deb is an ar archive holding data.tar.*
            python3 - "$f" "$R" <<'PY' || return 1
import io, sys, tarfile
data = open(sys.argv[1], 'rb').read()
assert data[:8] == b'!<arch>\n'
pos = 8
while pos < len(data):
    name = data[pos:pos + 16].decode().strip().rstrip('/')
    size = int(data[pos + 48:pos + 58].decode().strip())
    body = data[pos + 60:pos + 60 + size]
    if name.startswith('data.tar'):
        tarfile.open(fileobj=io.BytesIO(body)).extractall(sys.argv[2])
    pos += 60 + size + (size & 1)
PY
        fi
    done
    L="$R/usr/lib/x86_64-linux-gnu"
    # the .pc files name /usr: point them at the prefix
    for pc in $(find "$R" -name '*.pc'); do sed -i "s#=/usr#=$R/usr#g" "$pc"; done
    export PKG_CONFIG_PATH="$L/pkgconfig:$L/openblas-pthread/pkgconfig:$R/usr/share/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
    if ! command -v pkg-config >/dev/null; then
        export PATH="$PATH:$R/usr/bin"
        export LD_LIBRARY_PATH="$L${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" # libpkgconf for pkgconf
    fi
    RUNLIB="$L:$L/openblas-pthread"
    EXTRA="-DCMAKE_PREFIX_PATH=$R/usr -DDP_WITH_FFTW=OFF"
    if ! command -v mpicc >/dev/null; then
        EXTRA="$EXTRA -DMPI_C_COMPILER=/nonexistent/mpicc -DMPI_C_HEADER_DIR=$L/openmpi/include"
        EXTRA="$EXTRA -DMPI_C_LIB_NAMES=mpi -DMPI_mpi_LIBRARY=$L/openmpi/lib/libmpi.so"
    fi
    # libraries that the linked ones need (libopen-rte, libhwloc, ...)
    EXTRA="$EXTRA -DCMAKE_EXE_LINKER_FLAGS=-Wl,-rpath-link,$L"
    EXTRA="$EXTRA -DCMAKE_SHARED_LINKER_FLAGS=-Wl,-rpath-link,$L"
}

configure() {
    # shellcheck disable=SC2086
    cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=Release -DDP_NATIVE=OFF $EXTRA
}

stamp "configure"
# DP_GPU_FORCE_DEPS=1 skips the plain attempt (to test the .gpudeps path)
if [ "${DP_GPU_FORCE_DEPS:-0}" = 1 ] || ! configure >"$O/configure.log" 2>&1; then
    if [ -d .gpudeps/debs ]; then
        stamp "plain configure failed (see configure.log); using the libraries in .gpudeps"
        [ -f "$O/configure.log" ] && mv "$O/configure.log" "$O/configure-plain.log"
        # (at most 8 files come back from $OUT: the unpacking log joins this one)
        if ! unpack_debs >>"$O/configure-plain.log" 2>&1; then
            tail -20 "$O/configure-plain.log"
            echo "gpu.sh: FAIL: cannot unpack .gpudeps/debs"
            exit 3
        fi
        rm -rf "$B"
        if ! configure >"$O/configure.log" 2>&1; then
            tail -30 "$O/configure.log"
            echo "gpu.sh: FAIL: configure failed even with .gpudeps"
            exit 3
        fi
    else
        tail -30 "$O/configure.log"
        echo "gpu.sh: FAIL: configure failed; missing libraries? run 'sh bench/gpu_deps.sh' on a"
        echo "machine with apt and carry .gpudeps with this call"
        exit 3
    fi
fi
grep 'dpsgd: \[' "$O/configure.log"
if ! grep -q 'dpsgd: \[x\] CUDA' "$O/configure.log"; then
    echo "gpu.sh: FAIL: CMake did not find the CUDA toolkit (nvcc)"
    exit 3
fi

stamp "build"
if ! cmake --build "$B" -j "$JOBS" --target check_cuda bench_gpu_train dpsgd >"$O/build.log" 2>&1; then
    grep -E 'error|Error' "$O/build.log" | head -30
    echo "gpu.sh: FAIL: build"
    exit 4
fi
grep -c 'warning' "$O/build.log" | xargs printf 'build: %s warning lines (build.log)\n'

run() { # run a built program with the unpacked libraries, if any, on its path
    if [ -n "$RUNLIB" ]; then
        LD_LIBRARY_PATH="$RUNLIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$@"
    else
        "$@"
    fi
}

# ---- checks ----
stamp "check_cuda"
NCCL=""
[ -z "$RUNLIB" ] && command -v mpirun >/dev/null && NCCL="--nccl" # MPI_Init needs a real MPI
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
run timeout 120 "$B/tests/gpu/check_cuda" $NCCL >"$O/check_cuda.log" 2>&1
CHECK=$?
cat "$O/check_cuda.log"
if [ $CHECK -eq 77 ]; then
    echo "gpu.sh: SKIP: no CUDA device here"
    exit 77
fi

stamp "compute-sanitizer memcheck (check_cuda --quick)"
CS=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
MEM=127
if [ -n "$CS" ]; then
    run timeout 150 "$CS" --tool memcheck --error-exitcode 9 --print-limit 20 \
        "$B/tests/gpu/check_cuda" --quick >"$O/memcheck.log" 2>&1
    MEM=$?
    tail -15 "$O/memcheck.log"
else
    echo "compute-sanitizer not found"
fi

# ---- the trainer: a whole CLI run on the device against the same run on the
# CPU (issue 5: "a whole noise-free training run on GPU equals the CPU run to
# 1e-4"): noise-free DP-SGD (clipping, --noise-multiplier 0) and --no-dp,
# SGD and Adam, parameters compared by tests/mpi/compare_models.py (the
# standard-library safetensors reader, not dpsgd); then eval --device cuda
# against eval --device cpu on the GPU-trained model.
stamp "trainer: --device cuda against --device cpu"
TD=$(mktemp -d /tmp/dpsgd-gpu-train-XXXXXX)
PY=python3
/usr/bin/python3 -c "import numpy" 2>/dev/null && PY=/usr/bin/python3 # make_dataset.py needs numpy
TR="$O/train_cmp.log"
TRAIN=0
# the whole stage within 120 s: each run gets at most 60 s and what is left
TEND=$(($(date +%s) + 120))
tl() {
    r=$((TEND - $(date +%s)))
    [ $r -gt 60 ] && r=60
    [ $r -lt 1 ] && r=1
    echo $r
}
$PY tests/mpi/make_dataset.py "$TD/ds" 6000 10 11 >"$TR" 2>&1 || { TRAIN=7; echo "FAIL: make_dataset.py (numpy?)" >>"$TR"; }
i=0
for cfg in "--noise-multiplier 0 --optimizer sgd --lr 0.5" \
           "--noise-multiplier 0 --optimizer adam --lr 0.01 --max-grad-norm 0.5" \
           "--no-dp --optimizer momentum --lr 0.1"; do
    [ $TRAIN -ne 0 ] && break
    i=$((i + 1))
    # cuda: graph replay (the default); cudal: kernels launched one by one
    # shellcheck disable=SC2086
    for dev in cpu cuda cudal; do
        flags="--device $dev"
        [ $dev = cudal ] && flags="--device cuda --no-cuda-graph"
        echo "== run $i $dev: $cfg" >>"$TR"
        run timeout $(tl) "$B/dpsgd" train "$TD/ds" -o "$TD/$dev$i" --epochs 2 --batch-size 200 \
            --seed 7 --quiet $flags $cfg >>"$TR" 2>&1 || { TRAIN=7; echo "FAIL: train $dev $cfg" >>"$TR"; }
    done
    [ $TRAIN -ne 0 ] && break
    for dev in cuda cudal; do
        python3 tests/mpi/compare_models.py --rel 1e-4 "$TD/cpu$i/model.safetensors" \
            "$TD/$dev$i/model.safetensors" >>"$TR" 2>&1 || { TRAIN=7; echo "FAIL: models differ: $dev $cfg" >>"$TR"; }
    done
done
# a run checkpointed on the CPU and killed, resumed on the GPU (--resume
# --device cuda), against the uninterrupted CPU run
if [ $TRAIN -eq 0 ]; then
    R1="--epochs 2 --batch-size 200 --seed 7 --quiet --noise-multiplier 0 --lr 0.5 --checkpoint-every 10"
    # shellcheck disable=SC2086
    run env DPSGD_TEST_KILL_AFTER_STEP=25 timeout $(tl) "$B/dpsgd" train "$TD/ds" -o "$TD/moved" $R1 \
        >>"$TR" 2>&1
    run timeout $(tl) "$B/dpsgd" train "$TD/ds" -o "$TD/moved" --resume --device cuda >>"$TR" 2>&1 &&
    python3 tests/mpi/compare_models.py --rel 1e-4 "$TD/cpu1/model.safetensors" \
        "$TD/moved/model.safetensors" >>"$TR" 2>&1 || { TRAIN=7; echo "FAIL: cpu -> cuda resume" >>"$TR"; }
fi
if [ $TRAIN -eq 0 ]; then
    run timeout $(tl) "$B/dpsgd" eval "$TD/cuda1" "$TD/ds" --json --device cpu >"$TD/e_cpu.json" 2>>"$TR" &&
    run timeout $(tl) "$B/dpsgd" eval "$TD/cuda1" "$TD/ds" --json --device cuda >"$TD/e_gpu.json" 2>>"$TR" &&
    python3 - "$TD/e_cpu.json" "$TD/e_gpu.json" >>"$TR" 2>&1 <<'PY' || { TRAIN=7; echo "FAIL: eval differs" >>"$TR"; }
import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:])
def walk(x, y, path):
    if isinstance(x, dict):
        for k in x: walk(x[k], y[k], path + "." + k)
    elif isinstance(x, list):
        for i, (u, v) in enumerate(zip(x, y)): walk(u, v, f"{path}[{i}]")
    elif isinstance(x, float):
        assert abs(x - y) <= 1e-4 * max(1.0, abs(x)), f"{path}: cpu {x} gpu {y}"
walk(a, b, "eval")
print("eval --device cuda equals eval --device cpu to 1e-4")
PY
fi
rm -rf "$TD"
cat "$TR"

stamp "gpu_train benchmark"
run timeout 120 "$B/bench/gpu_train" --budget 100 --json-file "$O/gpu_train.json" >"$O/gpu_train.txt" 2>&1
BENCH=$?

stamp "done"
echo
echo "================ summary ================"
head -1 "$O/check_cuda.log"
grep -E '^(FAIL|check_cuda:)' "$O/check_cuda.log"
printf 'check_cuda:  exit %s\n' "$CHECK"
printf 'memcheck:    exit %s (%s)\n' "$MEM" \
    "$(grep -E 'ERROR SUMMARY' "$O/memcheck.log" 2>/dev/null | tail -1)"
printf 'trainer cmp: exit %s (train_cmp.log)\n' "$TRAIN"
printf 'gpu_train:   exit %s\n' "$BENCH"
cat "$O/gpu_train.txt"
[ $CHECK -ne 0 ] && exit $CHECK
[ $MEM -ne 0 ] && exit 5
[ $TRAIN -ne 0 ] && exit $TRAIN
[ $BENCH -ne 0 ] && exit 6
exit 0
