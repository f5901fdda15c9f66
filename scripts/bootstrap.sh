#!/usr/bin/env bash
# Installs the system packages the build needs (OpenBLAS, oneDNN and pkg-config) when they are absent.
# Safe to run repeatedly; does nothing when everything is present.
set -euo pipefail
need=()
for pkg in libopenblas-dev libdnnl-dev pkg-config; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "bootstrap: installing ${need[*]}" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
if ! command -v swift >/dev/null 2>&1 && [ -x /opt/swift/usr/bin/swift ]; then
  echo "bootstrap: add /opt/swift/usr/bin to PATH" >&2
fi
