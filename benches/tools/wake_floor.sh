#!/usr/bin/env bash
# side-by-side.sh with a third till: examples/floor_till.rs, the least any daemon can do through
# the same harness (blocking read of the pty, one kept-alive GET or an answer from memory, one
# line to the socket). Interleaved in one run like side-by-side.sh, so the peer's and wxcardd's
# figures can be read against the wake-up floor of this machine (BENCHMARKS.md, "Issue 12",
# part 8). From the repo root:
#   cargo build --release --no-default-features && cargo build --release --example floor_till
#   WXCARDD=target/release/wxcardd ROUNDS=3 N=2000 bash benches/tools/wake_floor.sh
set -u
HERE=${SHARED_BENCH:-}
for d in ../shared/bench ../../shared/bench; do [[ -z $HERE && -d $d ]] && HERE=$(cd "$d" && pwd); done
[[ -n $HERE ]] || { echo "no ../shared/bench: set SHARED_BENCH"; exit 2; }
WXCARDD=$(readlink -f "${WXCARDD:-target/release/wxcardd}")
FLOOR=$(readlink -f "${FLOOR:-target/release/examples/floor_till}")
ROUNDS=${ROUNDS:-3}; N=${N:-2000}; WHO=${WHO:-"floor peer wxcardd"}
[[ -x $WXCARDD && -x $FLOOR ]] || { echo "build wxcardd and the floor_till example first"; exit 2; }
work=$(mktemp -d); trap 'stop_backend; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
sed "s#PORT#$port#" "$HERE/nginx-backend.conf" >"$work/nginx.conf"
sed "s#BACKEND_URL#http://127.0.0.1:$port/#" "$HERE/wxcardd.toml" >"$work/wxcardd.toml"
start_backend() {
  nginx -p "$work" -c "$work/nginx.conf" -g 'daemon off;' 2>>"$work/nginx.log" & echo $! >"$work/ngx.pid"
  for _ in $(seq 50); do curl -s "http://127.0.0.1:$port/" >/dev/null && return; sleep 0.1; done
  echo "nginx did not start"; exit 2
}
stop_backend() { [[ -f $work/ngx.pid ]] && kill "$(cat "$work/ngx.pid")" 2>/dev/null; wait 2>/dev/null; rm -f "$work/ngx.pid"; }
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
