#!/usr/bin/env bash
# The suppression list's cost, side by side in one loop (BENCHMARKS.md, "Suppression lists"):
# a previous build without a list, this build without a list, this build with a list of a
# million consumers on the bench's offer. Usage: benches/suppression.sh PREVIOUS_GAVEL NEW_GAVEL
# (release binaries; each run starts its own private PostgreSQL). Results: one JSON per run in
# $OUT (default /tmp/supp-bench), summarized at the end.
set -u
prev=${1:?previous gavel binary}
new=${2:?this build\'s gavel binary}
out=${OUT:-/tmp/supp-bench}
mkdir -p "$out"
args=(--contracts 30 --rate 300 --post-fraction 0.3 --duration 10 --pgbench-seconds 0 --json)
for round in ${ROUNDS:-1 2 3 4 5 6}; do
  env -u GAVEL_DATABASE_URL "$prev" bench "${args[@]}" > "$out/prev-$round.json"
  env -u GAVEL_DATABASE_URL "$new" bench "${args[@]}" > "$out/new-$round.json"
  env -u GAVEL_DATABASE_URL "$new" bench "${args[@]}" --suppression-entries 1000000 > "$out/list-$round.json"
done
python3 - "$out" <<'PY'
import glob, json, statistics, sys
for kind in ("prev", "new", "list"):
    runs = []
    for path in sorted(glob.glob(f"{sys.argv[1]}/{kind}-*.json")):
        try:
            runs.append(json.load(open(path)))
        except ValueError:
            print(path, "has no result")
    ping = [r["ping_latency"]["p50_ms"] for r in runs]
    post = [r["post_latency"]["p50_ms"] for r in runs]
    print(f"{kind}: ping p50 median {statistics.median(ping):.2f} ms {ping}; "
          f"post p50 median {statistics.median(post):.2f} ms {post}")
PY
