#!/usr/bin/env bash
# The README's first command: installs OpenBLAS when missing, builds in release, runs `teacache demo`.
# Arguments are passed through, e.g. `scripts/demo.sh --thresholds 0.2,0.6 --output /tmp/out`.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
bash scripts/bootstrap.sh
swift build -c release
exec .build/release/teacache demo "$@"
