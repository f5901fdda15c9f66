#!/usr/bin/env bash
# Builds and runs the whole test suite under a sanitizer, in its own scratch folder (.build-asan or
# .build-tsan, so the normal build is untouched):
#
#   scripts/sanitize.sh address     # AddressSanitizer + LeakSanitizer
#   scripts/sanitize.sh thread      # ThreadSanitizer
#
# Extra arguments go to `swift test` (e.g. `--filter ConcurrentGenerationTests`; scripts/test.sh runs one
# filtered run of each sanitizer). Exits 0 only when at least one test ran, every test passed and the
# sanitizer reported nothing about the project. Reports about code that is not ours (the test harness,
# the Swift runtime, Foundation, Dispatch) are suppressed by name in scripts/sanitizers/*.supp, each entry
# with the reason; nothing of this package is suppressed.
# The full log is kept in .build-<asan|tsan>/sanitize.log.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"

kind="${1:-}"
case "$kind" in
  address) short=asan ;;
  thread) short=tsan ;;
  *) echo "usage: scripts/sanitize.sh address|thread [swift test arguments...]" >&2; exit 2 ;;
esac
shift
scratch=".build-$short"
supp="$PWD/scripts/sanitizers"
log="$scratch/sanitize.log"

bash scripts/bootstrap.sh || exit 1
echo "sanitize: building with --sanitize=$kind in $scratch" >&2
swift build --build-tests --sanitize="$kind" --scratch-path "$scratch" || { echo "sanitize: build failed" >&2; exit 1; }

# Every report goes to stderr (and into the log); the process exits non-zero on any unsuppressed report.
# detect_leaks is on by default for ASan on Linux; said explicitly so the intent is visible.
export ASAN_OPTIONS="detect_leaks=1:halt_on_error=0:detect_stack_use_after_return=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=1${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export TSAN_OPTIONS="suppressions=$supp/tsan.supp:halt_on_error=0:exitcode=66:history_size=4${TSAN_OPTIONS:+:$TSAN_OPTIONS}"

start=$(date +%s)
swift test --skip-build --sanitize="$kind" --scratch-path "$scratch" "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
elapsed=$(( $(date +%s) - start ))

reports=$(grep -cE '^(==[0-9]+==ERROR: (Address|Leak)Sanitizer|WARNING: ThreadSanitizer|SUMMARY: (Address|Thread|Leak)Sanitizer)' "$log")
passed=0
grep -Eq 'Test run with [1-9][0-9]* tests? in [0-9]+ suites? passed' "$log" && passed=1
echo "sanitize $kind: swift test exit $status, $reports sanitizer report line(s), ${elapsed} s; log in $log" >&2
if [ "$status" -ne 0 ] || [ "$reports" -ne 0 ] || [ "$passed" -ne 1 ]; then
  [ "$passed" -ne 1 ] && echo "sanitize $kind: no passing Swift Testing run with at least one test in the log" >&2
  echo "sanitize $kind: NOT CLEAN" >&2
  exit 1
fi
echo "sanitize $kind: clean" >&2
