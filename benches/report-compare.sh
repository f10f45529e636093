#!/usr/bin/env bash
# Times the summary report of two Gavel builds serving the same database, alternating:
# `benches/report-compare.sh <admin key> <before url> <after url> [rounds]`. Each round asks
# every grouping for the last 31 days and for one whole day (two days ago), once of each build
# (which goes first alternates by round), and prints one line per request:
# `round group_by range build seconds`. Noise on the machine then hits both builds alike.
set -euo pipefail
key=$1 before=$2 after=$3 rounds=${4:-3}
now=$(date -u +%s)
iso() { date -u -d "@$1" +%Y-%m-%dT%H:%M:%SZ; }
month="from=$(iso $((now - 31 * 86400)))&to=$(iso "$now")"
day="from=$(iso $((now - 2 * 86400)))&to=$(iso $((now - 86400)))"
ask() { # build url group range query
  curl -sS -o /dev/null -w '%{http_code} %{time_total}\n' -H "Authorization: Bearer $key" \
    "$2/v1/admin/reports/summary?group_by=$3&$5"
}
for round in $(seq 1 "$rounds"); do
  for group in offer partner buyer contract; do
    for range in month day; do
      query=${!range}
      if ((round % 2)); then order="before after"; else order="after before"; fi
      for build in $order; do
        read -r code seconds < <(ask "$build" "${!build}" "$group" "$range" "$query")
        [[ $code == 200 ]] || { echo "HTTP $code from $build" >&2; exit 1; }
        echo "$round $group $range $build $seconds"
      done
    done
  done
done
