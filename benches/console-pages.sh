#!/bin/bash
# Each console page's server time: sign in with an admin key as a browser does, then request
# each page ROUNDS times and print the median, min and max (ms). usage: console-pages.sh BASE KEY PING_ID ROUNDS [PATH...]
BASE=$1 KEY=$2 PING=$3 N=${4:-9}
J=$(mktemp)
tok=$(curl -s -c $J "$BASE/console/sign-in" | grep -o 'name="csrf" value="[^"]*"' | sed 's/.*value="//;s/"//')
curl -s -b $J -c $J -H "Origin: $BASE" -o /dev/null -w "signin %{http_code}\n" --data-urlencode "key=$KEY" --data-urlencode "csrf=$tok" "$BASE/console/sign-in"
shift 4
pages=${@:-/console/today /console/auctions /console/auctions/$PING /console/contracts /console/buyers /console/partners /console/reports "/console/reports?group_by=contract"}
for p in $pages; do
  ts=()
  for i in $(seq $N); do ts+=($(curl -s -b $J -o /dev/null -w "%{time_total}" "$BASE$p")); done
  printf "%s %s\n" "$p" "$(printf "%s\n" "${ts[@]}" | sort -n | awk '{a[NR]=$1*1000} END{printf "median %.1f min %.1f max %.1f", a[int((NR+1)/2)], a[1], a[NR]}')"
done
