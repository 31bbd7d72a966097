#!/bin/sh
# Installs the Debian packages dpsgd needs (DESIGN.md's dependency table) that are
# missing. Idempotent and silent when everything is present; run by `make`.
set -e
PKGS="cmake make gcc pkg-config libopenblas-dev libopenmpi-dev openmpi-bin zlib1g-dev
libzip-dev libcjson-dev libsodium-dev libfftw3-dev libcriterion-dev libssl-dev python3 python3-numpy zip"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "setup.sh: missing Debian packages:$missing (run as root, or install them)" >&2
    exit 1
fi
echo "setup.sh: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends $missing >/dev/null
