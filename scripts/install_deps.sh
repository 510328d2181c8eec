#!/usr/bin/env bash
# Installs the Debian packages Switchyard builds with, skipping those already present.
# Usage: scripts/install_deps.sh [--with-torch]   (--with-torch adds PyTorch for tools/ and bench/)
set -euo pipefail

packages=(cmake ninja-build g++ pkg-config libdnnl-dev libpcre2-dev nlohmann-json3-dev
          libcli11-dev libfmt-dev libgtest-dev libcpp-httplib-dev)
if [[ "${1:-}" == "--with-torch" ]]; then
  # OpenBLAS: Debian's torch multiplies through the system libblas.so.3, which is otherwise the slow
  # netlib reference BLAS; the peer benchmark must not be handicapped by it.
  packages+=(python3-torch python3-numpy python3-regex libopenblas0-pthread)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if (( ${#missing[@]} == 0 )); then
  exit 0
fi

echo "installing missing packages: ${missing[*]}"
sudo=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "error: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
