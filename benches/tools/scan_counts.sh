#!/usr/bin/env bash
# Scan -> `card` latency of one wxcardd binary, online and offline, with the daemon's context
# switches and CPU time per scan (BENCHMARKS.md, "Issue 12", part 4). Same harness, config
# and nginx backend as ../shared/bench/side-by-side.sh, wxcardd only; run from the repo root:
#   bash benches/tools/scan_counts.sh target/release/wxcardd 2000
# With AT_START='strace -f -c -p {pid} -o /tmp/x', that command is attached to the daemon
# for the measured scans only (syscall counts per scan: divide by N).
set -u
B=$(readlink -f "$1"); N=${2:-2000}; MODES=${3:-"online offline"}
T=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=backend.sh
. "$T/backend.sh"
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
