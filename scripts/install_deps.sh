#!/usr/bin/env bash
# Installs the Debian packages Switchyard builds with, skipping those already present; and, where
# node and npm are, the openai npm package that tests the server (tests/openai_client).
# Usage: scripts/install_deps.sh [--with-torch]   (--with-torch adds PyTorch for tools/ and bench/)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

# The official openai client for Node, at the version package-lock.json pins, unless it is there.
# Without the registry it warns and goes on: only the test that runs this client needs it.
install_openai_client() {
  command -v node >/dev/null && command -v npm >/dev/null || return 0
  local dir="$root/tests/openai_client"
  local locked installed
  locked=$(node -p "require('$dir/package-lock.json').packages['node_modules/openai'].version")
  installed=$(node -p "try { require('$dir/node_modules/openai/package.json').version } catch { '' }")
  [[ "$installed" == "$locked" ]] && return 0
  echo "installing the openai npm package $locked into tests/openai_client/node_modules"
  npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error >/dev/null ||
    echo "warning: npm ci failed in tests/openai_client: the openai client test cannot run" >&2
}

packages=(cmake ninja-build g++ pkg-config libdnnl-dev libpcre2-dev nlohmann-json3-dev
          libcli11-dev libfmt-dev libgtest-dev libcpp-httplib-dev libbenchmark-dev
          libopenmpi-dev openmpi-bin)
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
  install_openai_client
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
install_openai_client
