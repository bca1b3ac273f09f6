#!/usr/bin/env bash
# Compares two builds of keyward at a fixed order rate, alternated round by round:
# keyward's CPU time and its threads' sleeps per order (from /proc) and oha's p50 and
# p99. On a noisy machine, paired rounds show differences of a few percent that whole
# loadbench runs, minutes apart, cannot (docs/performance.md, "Fewer hand-overs per
# order").
#
#   bench/scripts/orders-at-rate.sh OLD_LOADBENCH [ROUNDS] [RATE] [SECONDS]
#
# OLD_LOADBENCH is a copy of target/release/loadbench built from the other commit
# (it serves as keyward under that name). The new build is target/release/loadbench.
set -euo pipefail
old=${1:?usage: $0 OLD_LOADBENCH [ROUNDS] [RATE] [SECONDS]}
rounds=${2:-6}
rate=${3:-2000}
seconds=${4:-6}
top=$(cd "$(dirname "$0")/../.." && pwd)
new="$top/target/release/loadbench"
[ -x "$new" ] || { echo "build it first: cargo build --release -p keyward-bench --bin loadbench" >&2; exit 2; }
[ -x "$old" ] || { echo "$old is not an executable loadbench" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# loadbench runs its keyward as "<wrapper> <its own binary>": this wrapper drops the
# latter and runs the old binary under the name keyward instead.
mkdir "$work/old"
ln -s "$(realpath "$old")" "$work/old/keyward"
printf '#!/bin/sh\nshift\nexec %s "$@"\n' "$work/old/keyward" > "$work/run-old"
chmod +x "$work/run-old"

sleeps_of() { # voluntary context switches of every thread of a process
  local total=0 n
  for status in /proc/"$1"/task/*/status; do
    n=$(awk '/^voluntary_ctxt_switches/ {print $2}' "$status" 2>/dev/null || echo 0)
    total=$((total + ${n:-0}))
  done
  echo "$total"
}
ticks_of() { awk '{print $14 + $15}' /proc/"$1"/stat; }

printf '%-5s %-5s %9s %10s %8s %10s %10s\n' build round orders "CPU/order" sleeps "p50 (ms)" "p99 (ms)"
for round in $(seq 1 "$rounds"); do
  for build in new old; do
    wrapper=()
    [ "$build" = old ] && wrapper=(--keyward-wrapper "$work/run-old")
    log="$work/hold.$build"
    "$new" --paths keyward --idle-connections 0 --hold "${wrapper[@]}" > "$log" 2>&1 &
    bench=$!
    for _ in $(seq 1 120); do grep -q "oha" "$log" && break; sleep 1; done
    pid=$(grep -oE "keyward pid [0-9]+" "$log" | grep -oE "[0-9]+$")
    order=$(grep -A1 "keyward order:" "$log" | tail -1)
    at_rate=${order/-z 10s -c 64/-z ${seconds}s -c 16 -q $rate --latency-correction}
    warm=${order/-z 10s -c 64/-z 2s -c 16 -q $rate}
    eval "$warm" > /dev/null 2>&1
    sleeps0=$(sleeps_of "$pid"); ticks0=$(ticks_of "$pid")
    out=$(eval "$at_rate" 2>&1)
    sleeps1=$(sleeps_of "$pid"); ticks1=$(ticks_of "$pid")
    kill "$bench"; wait "$bench" 2>/dev/null || true
    orders=$(echo "$out" | grep -E '^\s+\[200\]' | grep -oE '[0-9]+ responses' | grep -oE '[0-9]+')
    p50=$(echo "$out" | awk '/50.00%/ {print $3}')
    p99=$(echo "$out" | awk '/99.00%/ {print $3}')
    awk -v b="$build" -v r="$round" -v n="$orders" -v t="$((ticks1 - ticks0))" \
      -v hz="$(getconf CLK_TCK)" -v s="$((sleeps1 - sleeps0))" -v p50="$p50" -v p99="$p99" \
      'BEGIN { printf "%-5s %-5s %9d %8.1f us %8.2f %10s %10s\n", b, r, n, t * 1e6 / hz / n, s / n, p50, p99 }'
    sleep 1
  done
done
