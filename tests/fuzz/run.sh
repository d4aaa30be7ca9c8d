#!/usr/bin/env bash
# Runs libFuzzer targets (built by CMake, see CMakeLists.txt here) for a
# bounded time each, on a copy of the committed corpus, so that the inputs
# they discover never land in the repository.
#
#   tests/fuzz/run.sh BIN_DIR [TARGET...]     # every target when none is named
#   FUZZ_SECONDS=300 tests/fuzz/run.sh build/fuzz/tests/fuzz jwt
#
# BIN_DIR holds the <target>_fuzz executables (`make fuzz` builds them into
# build/fuzz/tests/fuzz). For each target it uses corpus/<target>/ (seeds),
# dict/<target>.dict when present, and the libFuzzer flags on the
# `// fuzz-options:` line of <target>_fuzz.cpp, if any. FUZZ_SECONDS (default
# 60) bounds each run.
#
# Exit status: 0 when no target found anything; 1 otherwise. A failing
# target's work directory (binary output, crash-* input) is kept and named.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ $# -lt 1 ]; then
  echo "usage: $0 BIN_DIR [TARGET...]" >&2
  exit 2
fi
if [ ! -d "$1" ]; then
  echo "run.sh: no directory $1 (cmake --build build --target docflow_fuzz builds the targets)" >&2
  exit 2
fi
bin_dir="$(cd "$1" && pwd)"
shift
seconds="${FUZZ_SECONDS:-60}"

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for source in "$here"/*_fuzz.cpp; do
    name="$(basename "$source" _fuzz.cpp)"
    targets+=("$name")
  done
fi

failed=()
for name in "${targets[@]}"; do
  binary="$bin_dir/${name}_fuzz"
  if [ ! -x "$binary" ]; then
    echo "run.sh: $binary is not built (cmake --build build --target docflow_fuzz)" >&2
    exit 2
  fi
  if [ ! -d "$here/corpus/$name" ]; then
    echo "run.sh: no seed corpus $here/corpus/$name" >&2
    exit 2
  fi
  args=(-max_total_time="$seconds" -timeout=10 -print_final_stats=1)
  [ -f "$here/dict/$name.dict" ] && args+=(-dict="$here/dict/$name.dict")
  options="$(sed -n 's|^// fuzz-options:||p' "$here/${name}_fuzz.cpp")"
  # shellcheck disable=SC2206  # the options are whitespace-separated flags
  [ -n "$options" ] && args+=($options)

  work="$(mktemp -d "${TMPDIR:-/tmp}/docflow-fuzz-$name.XXXXXX")"
  cp -r "$here/corpus/$name" "$work/corpus"
  echo "== fuzzing $name for ${seconds}s in $work"
  status=0
  (cd "$work" && "$binary" "${args[@]}" -artifact_prefix="$work/" corpus) || status=$?
  if [ "$status" -eq 0 ]; then
    rm -rf "$work"
  else
    echo "== $name: libFuzzer exited with $status; the input that failed is in $work" >&2
    failed+=("$name")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "== failed: ${failed[*]}" >&2
  exit 1
fi
echo "== no findings in: ${targets[*]}"
