#!/usr/bin/env bash
# bench/http_bench.sh: requests/s and throughput of scripts/static_server.lua against Node's
# node_http_static.js, same file, same wrk settings, alternating runs in one go.
# usage: bench/http_bench.sh [RILL_BIN] [SECONDS] [RUNS]   (needs wrk and node)
set -euo pipefail
cd "$(dirname "$0")/.."
rill=${1:-build/rill}
secs=${2:-5}
runs=${3:-3}
anchors=../shared/anchors
dir=$(mktemp -d)
trap 'kill $rpid $npid 2>/dev/null || true; rm -rf "$dir"' EXIT
head -c 1024 /dev/urandom >"$dir/1k.bin"
head -c 1048576 /dev/urandom >"$dir/1m.bin"
for size in 1k 1m; do
  "$rill" scripts/static_server.lua "$dir" 18931 2>/dev/null & rpid=$!
  node "$anchors/node_http_static.js" "$dir/$size.bin" 18932 & npid=$!
  sleep 1
  r=(); n=()
  for i in $(seq "$runs"); do
    r+=("$(wrk -t1 -c50 -d"${secs}s" "http://127.0.0.1:18931/$size.bin" | awk '/Requests\/sec/ {print $2}')")
    n+=("$(wrk -t1 -c50 -d"${secs}s" "http://127.0.0.1:18932/" | awk '/Requests\/sec/ {print $2}')")
  done
  kill $rpid $npid; wait $rpid $npid 2>/dev/null || true
  median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
  rm_=$(median "${r[@]}"); nm=$(median "${n[@]}")
  echo "$size file: rill ${rm_} req/s (runs: ${r[*]}), node ${nm} req/s (runs: ${n[*]}), ratio $(awk -v a="$rm_" -v b="$nm" 'BEGIN {printf "%.2f", a/b}')"
done
