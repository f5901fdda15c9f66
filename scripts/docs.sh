#!/usr/bin/env bash
# Builds the DocC documentation of every public module with warnings as errors (0 warnings each).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
for target in Tensors Safetensors TeaCache DiTModels DiTHarness TeaCacheDemo; do
  BUILD_DOCS=1 swift package generate-documentation --target "$target" --warnings-as-errors
done
