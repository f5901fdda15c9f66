#!/usr/bin/env bash
# The project's test command: installs build dependencies when absent, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
bash scripts/bootstrap.sh
swift build --build-tests
swift test "$@"
