#!/bin/sh
# gpu_deps.sh: run on a Debian bookworm machine with apt (not on the GPU
# machine, which has no network): download the .deb files of the libraries
# dpsgd links that a CUDA image may lack (libsodium, cJSON, libzip, zlib,
# OpenBLAS, Open MPI, pkgconf; libssl3 for libzip) into .gpudeps/debs,
# git-ignored, so that they travel with the working tree to the GPU machine
# (the device tool: carry [".gpudeps"]), where bench/gpu.sh unpacks
# them into a private prefix (/tmp/dpsgd-gpudeps) only if its own configure
# fails.
# About 21 MB. Nothing is installed on either machine.
set -eu
cd "$(dirname "$0")/.."
grep -qx '/.gpudeps/' .git/info/exclude 2>/dev/null || echo '/.gpudeps/' >>.git/info/exclude
mkdir -p .gpudeps/debs
cd .gpudeps/debs
# runtime + development packages; the libraries the runtime ones need beyond
# glibc (gfortran/quadmath for OpenBLAS, hwloc/libevent for Open MPI, bz2 for
# libzip) are listed too, since a slim image may not have them
apt-get download \
    libsodium23 libsodium-dev libcjson1 libcjson-dev libzip4 libzip-dev zlib1g zlib1g-dev \
    libbz2-1.0 libopenblas0-pthread libopenblas-pthread-dev libopenblas-dev libgfortran5 \
    libquadmath0 libopenmpi3 libopenmpi-dev libhwloc15 libevent-core-2.1-7 \
    libevent-pthreads-2.1-7 libudev1 libssl3 pkgconf pkgconf-bin libpkgconf3
ls -1 | wc -l | xargs printf 'gpu_deps: %s packages in .gpudeps/debs ('
du -sh . | cut -f1 | xargs printf '%s); carry .gpudeps with bench/gpu.sh\n'
