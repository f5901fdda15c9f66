#!/usr/bin/env bash
# The project's test command: installs build dependencies when absent, then runs every test, then the
# short fuzz campaign through the CLI (scripts/fuzz.sh, FUZZ_CI_CASES cases per kind, default 200, with the
# debug build of `teacache` that the suite built, so CI needs no release build).
# Arguments go to `swift test`; with arguments (e.g. --filter) the fuzz campaign is left out.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
bash scripts/bootstrap.sh
swift build --build-tests
swift test "$@"
if [ $# -eq 0 ]; then
  FUZZ_SKIP_BUILD=1 FUZZ_CONFIGURATION=debug bash scripts/fuzz.sh "${FUZZ_CI_CASES:-200}"
fi
