#!/usr/bin/env bash
# Builds the multipart fuzz target with clang (libFuzzer, ASan, UBSan) and
# runs it for a bounded time on a copy of the committed corpus, so that the
# inputs it discovers never land in the repository.
#
#   tests/fuzz/run.sh                 # 30 s
#   FUZZ_SECONDS=300 tests/fuzz/run.sh
#
# Exit status: 0 when no crash was found; libFuzzer's status otherwise (the
# crashing input is written to the work directory, which is then kept).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
seconds="${FUZZ_SECONDS:-30}"
cxx="${CLANGXX:-clang++}"
work="$(mktemp -d "${TMPDIR:-/tmp}/docflow-fuzz.XXXXXX")"

"$cxx" -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I"$repo/src" "$repo/tests/fuzz/multipart_fuzz.cpp" "$repo/src/http/multipart.cpp" "$repo/src/core/encoding.cpp" \
  -o "$work/multipart_fuzz"

cp -r "$repo/tests/fuzz/corpus/multipart" "$work/corpus"
echo "fuzzing multipart_parser for ${seconds}s in $work"
status=0
(cd "$work" && ./multipart_fuzz -max_total_time="$seconds" -print_final_stats=1 corpus) || status=$?
if [ "$status" -eq 0 ]; then
  rm -rf "$work"
else
  echo "libFuzzer exited with $status; crash input and binary kept in $work" >&2
fi
exit "$status"
