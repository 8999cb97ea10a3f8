#!/bin/sh
# Run the atheris fuzz target for a bounded time on a scratch copy of the committed corpus.
#   fuzz/run.sh [SECONDS] [extra libFuzzer flags...]      (default 30 s)
# Exit 0: no crash. Otherwise libFuzzer's exit status; the crashing input is written to
# fuzz/crashes/ (add it to fuzz/corpus/ once fixed, so it stays a regression seed).
# New inputs found are kept in the scratch copy only: refresh the corpus deliberately with
#   fuzz/run.sh 600 -merge=1   (merges the findings back, minimised, into fuzz/corpus/).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
seconds=${1:-30}
[ $# -gt 0 ] && shift
python=${PYTHON:-$root/.venv/bin/python}
[ -x "$python" ] || python=python3
mkdir -p "$here/crashes"
scratch=$(mktemp -d "${TMPDIR:-/tmp}/framecast-fuzz-XXXXXX")
trap 'rm -rf "$scratch"' EXIT
cp "$here"/corpus/* "$scratch"/
case " $* " in
  *" -merge=1 "*)
    cd "$root" && exec "$python" "$here/fuzz_wire.py" -merge=1 "$here/corpus" "$scratch" ;;
esac
cd "$root"
# -rss_limit_mb: the decoders must not need more than this for one input either.
"$python" "$here/fuzz_wire.py" -max_total_time="$seconds" -rss_limit_mb=1024 -timeout=10 \
  -artifact_prefix="$here/crashes/" -print_final_stats=1 "$@" "$scratch"
