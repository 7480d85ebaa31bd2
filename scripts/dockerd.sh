#!/usr/bin/env bash
# Makes sure a Docker engine answers for the `docker` environment and its
# tests: `start` does nothing when one already answers (DOCKER_HOST or the
# default socket), else starts Debian's dockerd with its defaults and waits
# for it; `stop` stops only a dockerd this script started.
set -euo pipefail
pidfile=/run/kmatrix-dockerd.pid
log=/tmp/kmatrix-dockerd.log
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

answers() { docker info >/dev/null 2>&1; }

case "${1:-}" in
  start)
    if answers; then
      echo "dockerd: an engine already answers; using it" >&2
      exit 0
    fi
    command -v dockerd >/dev/null || { echo "dockerd: not installed (run scripts/setup.sh)" >&2; exit 1; }
    echo "dockerd: starting Debian's dockerd (log: $log)" >&2
    $sudo sh -c "nohup dockerd >'$log' 2>&1 & echo \$! >'$pidfile'"
    for _ in $(seq 1 60); do
      answers && exit 0
      sleep 0.5
    done
    echo "dockerd: did not answer within 30 s; its log ($log) ends:" >&2
    tail -n 20 "$log" >&2 || true
    exit 1
    ;;
  stop)
    [ -f "$pidfile" ] || exit 0
    pid=$(cat "$pidfile")
    $sudo kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    $sudo rm -f "$pidfile"
    echo "dockerd: stopped the engine scripts/dockerd.sh started" >&2
    ;;
  *)
    echo "usage: scripts/dockerd.sh start|stop" >&2
    exit 2
    ;;
esac
