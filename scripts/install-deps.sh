#!/usr/bin/env bash
# Installs Portico's build, test and run dependencies from Debian packages (idempotent).
# Usage: scripts/install-deps.sh        (uses sudo when not root)
set -euo pipefail

PACKAGES=(
  build-essential cmake ccache pkg-config git
  libboost1.81-dev libssl-dev libyaml-dev nlohmann-json3-dev libjemalloc-dev
  libgtest-dev
  python3 python3-pytest python3-requests python3-websockets python3-yaml
  libvectorscan-dev libre2-dev libhiredis-dev libprotobuf-dev libprotoc-dev python3-protobuf
  libmaxminddb-dev libmaxmind-db-writer-perl libluajit2-5.1-dev zlib1g-dev
  etcd-server redis-server openssl
  curl procps iproute2 util-linux
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]} == 0)); then
  exit 0
fi

SUDO=()
if [[ $(id -u) -ne 0 ]]; then SUDO=(sudo); fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -q >&2
"${SUDO[@]}" apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=600 "${missing[@]}" >&2
