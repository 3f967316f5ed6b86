#!/usr/bin/env bash
# Scan -> `card` latency of one wxcardd binary, online and offline, with the daemon's context
# switches and CPU time per scan (BENCHMARKS.md, "Issue 12", part 4). Same harness, config
# and nginx backend as ../shared/bench/side-by-side.sh, wxcardd only; run from the repo root:
#   bash benches/tools/scan_counts.sh target/release/wxcardd 2000
# With AT_START='strace -f -c -p {pid} -o /tmp/x', that command is attached to the daemon
# for the measured scans only (syscall counts per scan: divide by N).
set -u
B=$(readlink -f "$1"); N=${2:-2000}; MODES=${3:-"online offline"}
# The shared harness: ../shared/bench from the main checkout, ../../shared/bench from a
# worktree under wt/, or SHARED_BENCH.
HERE=${SHARED_BENCH:-}
for d in ../shared/bench ../../shared/bench; do [[ -z $HERE && -d $d ]] && HERE=$(cd "$d" && pwd); done
[[ -n $HERE ]] || { echo "no ../shared/bench: set SHARED_BENCH"; exit 2; }
T=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
sed "s#PORT#$port#" "$HERE/nginx-backend.conf" >"$work/nginx.conf"
sed "s#BACKEND_URL#http://127.0.0.1:$port/#" "$HERE/wxcardd.toml" >"$work/wxcardd.toml"
start_backend() {
  nginx -p "$work" -c "$work/nginx.conf" -g 'daemon off;' 2>>"$work/nginx.log" & echo $! >"$work/ngx.pid"
  for _ in $(seq 50); do curl -s "http://127.0.0.1:$port/" >/dev/null && return; sleep 0.1; done
}
stop_backend() { [[ -f $work/ngx.pid ]] && kill "$(cat "$work/ngx.pid")" 2>/dev/null; wait 2>/dev/null; rm -f "$work/ngx.pid"; }
for mode in $MODES; do
  start_backend
  extra=(); [[ $mode == offline ]] && extra=(--after-warmup "kill \$(cat $work/ngx.pid)" --settle-ms 1500)
  out=$(RUST_LOG=warn python3 "$T/latency_counts.py" --warmup 200 --n "$N" --code 100000000001 \
    --subscribe '{"id":1,"cmd":"subscribe"}' --template "$work/wxcardd.toml" "${extra[@]}" \
    -- "$B" --config {config} 2>/dev/null)
  echo "$(basename "$B") mode=$mode $out load=$(cut -d' ' -f1 /proc/loadavg)"
  stop_backend
done
rm -rf "$work"
