#!/usr/bin/env bash
# side-by-side.sh with a third till: examples/floor_till.rs, the least any daemon can do through
# the same harness (blocking read of the pty, one kept-alive GET or an answer from memory, one
# line to the socket). Interleaved in one run like side-by-side.sh, so the peer's and wxcardd's
# figures can be read against the wake-up floor of this machine (BENCHMARKS.md, "Issue 12",
# part 8). From the repo root:
#   cargo build --release --no-default-features && cargo build --release --example floor_till
#   WXCARDD=target/release/wxcardd ROUNDS=3 N=2000 bash benches/tools/wake_floor.sh
set -u
WXCARDD=$(readlink -f "${WXCARDD:-target/release/wxcardd}")
FLOOR=$(readlink -f "${FLOOR:-target/release/examples/floor_till}")
ROUNDS=${ROUNDS:-3}; N=${N:-2000}; WHO=${WHO:-"floor peer wxcardd"}
[[ -x $WXCARDD && -x $FLOOR ]] || { echo "build wxcardd and the floor_till example first"; exit 2; }
# shellcheck source=backend.sh
. "$(cd "$(dirname "$0")" && pwd)/backend.sh"
trap 'stop_backend; rm -rf "$work"' EXIT
for r in $(seq "$ROUNDS"); do
  start_backend
  echo "round=$r mode=floor who=http $(python3 "$HERE/http_floor.py" --port "$port" --n "$N")"
  stop_backend
  for mode in online offline; do
    for who in $WHO; do
      start_backend
      extra=(); [[ $mode == offline ]] && extra=(--after-warmup "kill \$(cat $work/ngx.pid)" --settle-ms 1500)
      case $who in
        floor) out=$(python3 "$HERE/latency.py" --n "$N" --code 100000000001 "${extra[@]}" \
                 -- "$FLOOR" --serial {tty} --socket {socket} --backend "127.0.0.1:$port" 2>/dev/null) ;;
        peer) fresh=(--fresh-s 0); [[ $mode == offline ]] && fresh=()
              out=$(python3 "$HERE/latency.py" --n "$N" --code 100000000001 "${extra[@]}" -- python3 \
                 "$HERE/peer_till.py" --serial {tty} --backend "http://127.0.0.1:$port/" --socket {socket} \
                 "${fresh[@]}" 2>/dev/null) ;;
        wxcardd) out=$(RUST_LOG=warn python3 "$HERE/latency.py" --n "$N" --code 100000000001 \
                 --subscribe '{"id":1,"cmd":"subscribe"}' --template "$work/wxcardd.toml" "${extra[@]}" \
                 -- "$WXCARDD" --config {config} 2>/dev/null) ;;
      esac
      echo "round=$r mode=$mode who=$who $out"
      stop_backend
    done
  done
done
