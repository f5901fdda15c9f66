#!/usr/bin/env bash
# The project's test command and what CI runs (.ci/run): installs build dependencies when absent, then
#   1. every test (`swift test`, debug build);
#   2. the short fuzz campaign through the CLI (scripts/fuzz.sh, FUZZ_CI_CASES cases per kind, default 200,
#      with the debug build of `teacache` that step 1 built, so CI needs no release build);
#   3. two short sanitizer runs (scripts/sanitize.sh, each its own sanitized build in .build-tsan or
#      .build-asan): ThreadSanitizer on ConcurrentGenerationTests (generations at once on one shared model)
#      and ThreadCountTests (kernels split over threads); AddressSanitizer + LeakSanitizer on the
#      safetensors suites, weight storage and loading at every precision (borrowed bf16/f16/int8), sharded
#      checkpoints and the robustness suites (fixture fuzzing, fuzz findings, budgets before allocation).
#      About 6 minutes together on 2 busy cores from empty scratch folders, almost all of it the two
#      builds (see README, Testing); TEST_SKIP_SANITIZERS=1 leaves them out.
# Any failing step fails the command; both sanitizer runs are always attempted.
# Arguments go to `swift test`; with arguments (e.g. --filter) steps 2 and 3 are left out.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
bash scripts/bootstrap.sh
swift build --build-tests
swift test "$@"
if [ $# -eq 0 ]; then
  FUZZ_SKIP_BUILD=1 FUZZ_CONFIGURATION=debug bash scripts/fuzz.sh "${FUZZ_CI_CASES:-200}"
  if [ "${TEST_SKIP_SANITIZERS:-0}" != 1 ]; then
    status=0
    bash scripts/sanitize.sh thread --filter 'ConcurrentGenerationTests|ThreadCountTests|WorkerPoolTests' || status=1
    bash scripts/sanitize.sh address --filter 'SafetensorsTests\.|WeightStorageTests|PrecisionTests|WeightLoaderTests|ShardedWeightsTests|FixtureFuzzTests|FuzzFindingsTests|BudgetBeforeAllocationTests' || status=1
    if [ "$status" -ne 0 ]; then echo "test: a sanitizer run was not clean (logs in .build-tsan/ and .build-asan/sanitize.log)" >&2; exit 1; fi
  fi
fi
