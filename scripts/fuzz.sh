#!/usr/bin/env bash
# The fuzz campaign through the `teacache` executable:
#
#   scripts/fuzz.sh N [KIND,...]
#
# runs N mutated cases per input kind (config, safetensors, sharded, fixture, benchmark, policy, preset;
# see Tests/DiTModelsTests/Robustness/CLIFuzzCampaign.swift), each through the CLI in a child process
# with an address-space cap and a time limit, and prints per kind: cases, typed errors, successes,
# untyped endings, crashes, hangs and the peak RSS of the largest child. Exits non-zero when any case
# crashed, hung or ended without a typed error; the inputs of those cases are kept (FUZZ_KEEP).
#
# Environment: FUZZ_SEED (1), FUZZ_TIMEOUT (seconds per child, 60), FUZZ_ADDRESS_SPACE_GB (4),
# FUZZ_REPORT (the table, rewritten every 20 rounds; default <scratch>/fuzz-report.md), FUZZ_KEEP,
# FUZZ_SKIP_BUILD=1 (use the existing debug build), TEACACHE_SCRATCH_PATH (build folder, default .build).
# The executables are copied first, so rebuilding during a long campaign does not change what it runs.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
n="${1:-}"
if ! [[ "$n" =~ ^[0-9]+$ ]] || [ "$n" -lt 1 ]; then
  echo "usage: scripts/fuzz.sh N [KIND,...]   (N cases per kind)" >&2
  exit 2
fi
scratch="${TEACACHE_SCRATCH_PATH:-.build}"
if [ "${FUZZ_SKIP_BUILD:-0}" != 1 ]; then
  bash scripts/bootstrap.sh
  swift build --build-tests --scratch-path "$scratch"
fi
bin="$(swift build --build-tests --scratch-path "$scratch" --show-bin-path)"
snap="$(mktemp -d "${TMPDIR:-/tmp}/teacache-fuzz-bin.XXXXXX")"
trap 'rm -rf "$snap"' EXIT
cp "$bin/teacache" "$bin/swift-teacachePackageTests.xctest" "$snap/"
export FUZZ_CLI_CASES="$n"
export FUZZ_TEACACHE="$snap/teacache"
export FUZZ_REPORT="${FUZZ_REPORT:-$PWD/$scratch/fuzz-report.md}"
if [ -n "${2:-}" ]; then export FUZZ_KINDS="$2"; fi
echo "fuzz: $n cases per kind; the table is rewritten in $FUZZ_REPORT as the campaign goes" >&2
start=$(date +%s)
status=0
"$snap/swift-teacachePackageTests.xctest" --testing-library swift-testing --filter CLIFuzzCampaign || status=$?
echo "fuzz: $(( $(date +%s) - start )) s, exit $status" >&2
cat "$FUZZ_REPORT"
exit "$status"
