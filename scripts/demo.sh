#!/usr/bin/env bash
# The README's first command: installs OpenBLAS when missing, builds in release, runs `teacache demo`.
# Arguments are passed through, e.g. `scripts/demo.sh --thresholds 0.2,0.6 --output /tmp/out`.
# TEACACHE_SCRATCH_PATH selects another build folder (default .build).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
scratch="${TEACACHE_SCRATCH_PATH:-.build}"
bash scripts/bootstrap.sh
swift build -c release --scratch-path "$scratch"
exec "$scratch/release/teacache" demo "$@"
