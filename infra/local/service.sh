#!/usr/bin/env bash
# Start or stop one background service of the local stack, tracked by PID file.
#   service.sh start NAME STATE_DIR PORT CMD [ARGS...]   idempotent; waits until PORT answers HTTP
#   service.sh stop NAME STATE_DIR                       SIGTERM, then SIGKILL after 15 s
set -euo pipefail
action=$1 name=$2 state=$3
pidfile="$state/$name.pid" log="$state/$name.log"
mkdir -p "$state"

alive() { [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

case $action in
start)
  port=$4; shift 4
  if alive; then echo "$name: already running (pid $(cat "$pidfile"))"; exit 0; fi
  if curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$port/"; then
    echo "$name: port $port is already taken by another process; stop it or choose another port" >&2
    exit 1
  fi
  setsid "$@" >"$log" 2>&1 < /dev/null &
  echo $! > "$pidfile"
  for _ in $(seq 1 240); do
    if curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$port/"; then
      echo "$name: up on 127.0.0.1:$port (pid $(cat "$pidfile"))"; exit 0
    fi
    if ! alive; then break; fi
    sleep 0.25
  done
  echo "$name: did not come up on 127.0.0.1:$port; last lines of $log:" >&2
  tail -n 30 "$log" >&2 || true
  exit 1
  ;;
stop)
  if ! alive; then rm -f "$pidfile"; exit 0; fi
  pid=$(cat "$pidfile")
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "$name: did not stop on SIGTERM within 15 s; killing" >&2
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
  echo "$name: stopped"
  ;;
*) echo "usage: $0 start|stop NAME STATE_DIR [PORT CMD...]" >&2; exit 2 ;;
esac
