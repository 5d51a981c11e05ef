#!/usr/bin/env bash
# sources-digest.sh — prints a digest of the sources the carried programs are built from
# (CMake files, the header, the library, the command, the tests), so that check.sh can
# tell a carry that bundle.sh built from this tree from one left over from other sources.
# Usage: bench/gpu/sources-digest.sh       (from the repository root)
set -euo pipefail
cd "$(dirname "$0")/../.."
find CMakeLists.txt cmake include src cli tests -type f \
  \( -name '*.c' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' -o -name 'CMakeLists.txt' -o -name '*.in' \) |
  LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16
