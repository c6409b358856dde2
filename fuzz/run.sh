#!/usr/bin/env bash
# Fuzz one target for a while on one core: fuzz/run.sh markdown|yaml|transcript SECONDS [libFuzzer flags]
# The seed corpus is copied to a scratch directory and crashes are written there too (set
# FUZZ_ARTIFACTS to keep them elsewhere): nothing new lands in the repository. Turn a crash into a
# strict-xfail reproducer in tests/test_fuzz.py. Needs `pip install atheris`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
target="$1"; seconds="$2"; shift 2
work="$(mktemp -d)"
cp -r "$here/corpus/$target" "$work/corpus"
artifacts="${FUZZ_ARTIFACTS:-$work/artifacts}"
mkdir -p "$artifacts"
echo "fuzz: $target for ${seconds}s; corpus $work/corpus, crashes in $artifacts" >&2
python "$here/fuzz_parsers.py" "$target" "$work/corpus" -max_total_time="$seconds" -max_len=8192 \
  -rss_limit_mb=2048 -timeout=20 -print_final_stats=1 -artifact_prefix="$artifacts/$target-" "$@"
