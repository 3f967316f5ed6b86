# Sourced by scan_counts.sh and wake_floor.sh: finds the shared harness (HERE), makes a work
# dir with nginx as the backend on a free port and wxcardd's config for it, as
# ../shared/bench/side-by-side.sh does, and defines start_backend / stop_backend.
HERE=${SHARED_BENCH:-}
for d in ../shared/bench ../../shared/bench; do [[ -z $HERE && -d $d ]] && HERE=$(cd "$d" && pwd); done
[[ -n $HERE ]] || { echo "no ../shared/bench: set SHARED_BENCH"; exit 2; }
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
sed "s#PORT#$port#" "$HERE/nginx-backend.conf" >"$work/nginx.conf"
sed "s#BACKEND_URL#http://127.0.0.1:$port/#" "$HERE/wxcardd.toml" >"$work/wxcardd.toml"
start_backend() {
  nginx -p "$work" -c "$work/nginx.conf" -g 'daemon off;' 2>>"$work/nginx.log" & echo $! >"$work/ngx.pid"
  for _ in $(seq 50); do curl -s "http://127.0.0.1:$port/" >/dev/null && return; sleep 0.1; done
  echo "nginx did not start: $(tail -n 3 "$work/nginx.log")"; exit 2
}
stop_backend() { [[ -f $work/ngx.pid ]] && kill "$(cat "$work/ngx.pid")" 2>/dev/null; wait 2>/dev/null; rm -f "$work/ngx.pid"; }
