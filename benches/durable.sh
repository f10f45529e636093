#!/usr/bin/env bash
# Issue 21's figures (BENCHMARKS.md, "Durable performance"). Usage:
#   benches/durable.sh PREVIOUS_GAVEL NEW_GAVEL
# (release binaries; every run starts its own private PostgreSQL). The harness is NEW_GAVEL's
# for both builds: the previous build's server runs under it with --server-binary.
#   1. the side-by-side loop: 30 RTB buyers, 3 and 300 contracts, 60 posts on one contract,
#      each pair in alternating order, $ROUNDS rounds;
#   2. the maximum rate with fsync on against pgbench's naive write (8 clients), 32 and 64
#      clients, three runs each;
#   3. five minutes at 500 pings/s with fsync on (per-second p99).
# Results: one JSON per run in $OUT (default /tmp/durable-bench).
set -u
prev=${1:?previous gavel binary}
new=${2:?this build\'s gavel binary}
out=${OUT:-/tmp/durable-bench}
mkdir -p "$out"
run() { # name build args...
  local name=$1 build=$2; shift 2
  local server=()
  [ "$build" = before ] && server=(--server-binary "$prev")
  env -u GAVEL_DATABASE_URL GAVEL_LOG_LEVEL=error "$new" bench "$@" "${server[@]}" --json \
    > "$out/$name-$build-$round.json"
}
for round in ${ROUNDS:-1 2 3 4}; do
  if [ $((round % 2)) = 1 ]; then order="now before"; else order="before now"; fi
  for b in $order; do
    run rtb "$b" --contracts 0 --rtb-buyers 30 --rtb-latency-ms 20 --rtb-jitter-ms 5 --rate 100 \
      --duration 8 --pgbench-seconds 0
  done
  for b in $order; do
    run c3 "$b" --contracts 3 --rate 200 --duration 8 --pgbench-seconds 0
    run c300 "$b" --contracts 300 --rate 200 --duration 8 --pgbench-seconds 0
  done
  for b in $order; do
    run hot "$b" --contracts 1 --concurrency 60 --posts-only --duration 8 --pgbench-seconds 3 \
      --pgbench-clients 1,2,4,8
  done
done
for round in 1 2 3; do
  for clients in 32 64; do
    run "max$clients" now --durable --contracts 30 --concurrency "$clients" --duration 8 \
      --pgbench-seconds 4 --pgbench-clients 8
  done
done
round=1 run five-minutes now --durable --contracts 30 --rate 500 --duration 300 --pgbench-seconds 0
