#!/usr/bin/env bash
# Install the project with its dev extra and make sure Fashion-MNIST is on this machine:
# found locally, downloaded by torchvision when online, or (Debian, as root, offline)
# installed from Debian's dataset-fashion-mnist package.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -e '.[dev]'
if ! python -m dlfoundations.data.fetch; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "Installing Debian's dataset-fashion-mnist package"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
    python -m dlfoundations.data.fetch --no-download
  else
    exit 1
  fi
fi
