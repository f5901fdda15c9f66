#!/usr/bin/env bash
# The fuzz campaign through the `teacache` executable:
#
#   scripts/fuzz.sh N [KIND,...]
#
# runs N mutated cases per input kind (config, safetensors, sharded, fixture, benchmark, policy, preset;
# see Tests/DiTModelsTests/Robustness/CLIFuzzCampaign.swift), each through the CLI in a child process
# with an address-space cap and a time limit, and prints per kind: cases, typed errors, successes,
# untyped endings, crashes, hangs, the peak RSS of the largest child and the CLI time per case. Exits
# non-zero when any case crashed, hung or ended without a typed error; the inputs of those cases are kept
# (FUZZ_KEEP).
#
# The CLI is the release build by default (what users run; Swift keeps its bounds and overflow checks in
# release, and the sources have no `assert`), about 3x cheaper per case than the debug build; the test
# runner that drives it is the debug test bundle. Cases run on FUZZ_JOBS workers (default: every core).
#
# Environment: FUZZ_SEED (1), FUZZ_TIMEOUT (seconds per child, 60), FUZZ_ADDRESS_SPACE_GB (4),
# FUZZ_JOBS (children at once, default the core count), FUZZ_CONFIGURATION (release or debug: which
# build of `teacache` runs the cases, default release), FUZZ_REPORT (the table, rewritten every 20 rounds;
# default <scratch>/fuzz-report.md), FUZZ_KEEP, FUZZ_TIMINGS (a file: one line per CLI run with kind,
# subcommand, ending and seconds), FUZZ_SKIP_BUILD=1 (use the existing builds), TEACACHE_SCRATCH_PATH
# (build folder, default .build).
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
configuration="${FUZZ_CONFIGURATION:-release}"
case "$configuration" in release|debug) ;; *) echo "fuzz: FUZZ_CONFIGURATION must be release or debug" >&2; exit 2 ;; esac
if [ "${FUZZ_SKIP_BUILD:-0}" != 1 ]; then
  bash scripts/bootstrap.sh
  swift build --build-tests --scratch-path "$scratch"
  if [ "$configuration" = release ]; then swift build -c release --product teacache --scratch-path "$scratch"; fi
fi
bin="$(swift build --build-tests --scratch-path "$scratch" --show-bin-path)"
cli="$(swift build -c "$configuration" --scratch-path "$scratch" --show-bin-path)/teacache"
if [ ! -x "$cli" ]; then echo "fuzz: no $configuration build of teacache at $cli (leave out FUZZ_SKIP_BUILD)" >&2; exit 2; fi
snap="$(mktemp -d "${TMPDIR:-/tmp}/teacache-fuzz-bin.XXXXXX")"
trap 'rm -rf "$snap"' EXIT
cp "$cli" "$bin/swift-teacachePackageTests.xctest" "$snap/"
export FUZZ_CLI_CASES="$n"
export FUZZ_TEACACHE="$snap/teacache"
export FUZZ_REPORT="${FUZZ_REPORT:-$PWD/$scratch/fuzz-report.md}"
if [ -n "${2:-}" ]; then export FUZZ_KINDS="$2"; fi
echo "fuzz: $n cases per kind, $configuration teacache; the table is rewritten in $FUZZ_REPORT as the campaign goes" >&2
start=$(date +%s)
status=0
"$snap/swift-teacachePackageTests.xctest" --testing-library swift-testing --filter CLIFuzzCampaign || status=$?
echo "fuzz: $(( $(date +%s) - start )) s, exit $status" >&2
cat "$FUZZ_REPORT"
exit "$status"
