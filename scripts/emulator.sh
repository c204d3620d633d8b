#!/usr/bin/env bash
# Start and stop the local Google Cloud Pub/Sub emulator for LMS.
#
#   scripts/emulator.sh start    start it on a free port (or $EMULATOR_PORT), wait until it serves
#   scripts/emulator.sh stop     stop it: TERM its whole process group, then KILL
#   scripts/emulator.sh status   say whether it runs, and where
#   scripts/emulator.sh host     print its host:port (for PUBSUB_EMULATOR_HOST)
#
# State lives in $EMULATOR_RUN_DIR (default .run/ at the repository root): emulator.pid holds
# the process group id, emulator.host the host:port, emulator.log its output.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN_DIR="${EMULATOR_RUN_DIR:-$ROOT/.run}"
PID_FILE="$RUN_DIR/emulator.pid"
HOST_FILE="$RUN_DIR/emulator.host"
LOG_FILE="$RUN_DIR/emulator.log"
EMULATOR_BIN="${EMULATOR_BIN:-/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator}"
START_TIMEOUT="${EMULATOR_START_TIMEOUT:-60}"
STOP_TIMEOUT="${EMULATOR_STOP_TIMEOUT:-10}"

say() { echo "emulator: $*" >&2; }

running() {  # true if the recorded process group still has a live process
    [[ -f "$PID_FILE" ]] || return 1
    local pgid
    pgid="$(cat "$PID_FILE")"
    [[ "$pgid" =~ ^[0-9]+$ ]] && kill -0 -- "-$pgid" 2>/dev/null
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
    if running; then
        say "already running at $(cat "$HOST_FILE") (pgid $(cat "$PID_FILE"))"
        cat "$HOST_FILE"
        return 0
    fi
    if [[ ! -x "$EMULATOR_BIN" ]]; then
        say "not installed: $EMULATOR_BIN (Debian package google-cloud-cli-pubsub-emulator)"
        return 1
    fi
    mkdir -p "$RUN_DIR"
    rm -f "$PID_FILE" "$HOST_FILE"
    local port="${EMULATOR_PORT:-$(free_port)}"
    local host="127.0.0.1:$port"
    # setsid: the emulator (a shell script starting java) leads its own process group, so
    # `stop` can end the script and the JVM together, and nothing else.
    setsid "$EMULATOR_BIN" --host=127.0.0.1 --port="$port" >"$LOG_FILE" 2>&1 </dev/null &
    local pid=$!
    local pgid
    pgid="$(ps -o pgid= -p "$pid" | tr -d ' ')"
    echo "${pgid:-$pid}" >"$PID_FILE"
    local waited=0
    until grep -q "Server started" "$LOG_FILE" 2>/dev/null; do
        if ! running; then
            say "exited before it started; its log ($LOG_FILE):"
            tail -n 20 "$LOG_FILE" >&2 || true
            rm -f "$PID_FILE"
            return 1
        fi
        if grep -q -E "BindException|Address already in use" "$LOG_FILE" 2>/dev/null; then
            say "cannot listen on $host (port taken?); stopping it. Its log ($LOG_FILE):"
            grep -E "Exception|already in use" "$LOG_FILE" | head -n 5 >&2 || true
            stop
            return 1
        fi
        if ((waited >= START_TIMEOUT * 10)); then
            say "not started after ${START_TIMEOUT}s; stopping it. Its log ($LOG_FILE):"
            tail -n 20 "$LOG_FILE" >&2 || true
            stop
            return 1
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    echo "$host" >"$HOST_FILE"
    say "started at $host (pgid $(cat "$PID_FILE"), log $LOG_FILE)"
    echo "$host"
}

stop() {
    if ! running; then
        rm -f "$PID_FILE" "$HOST_FILE"
        say "not running"
        return 0
    fi
    local pgid
    pgid="$(cat "$PID_FILE")"
    kill -TERM -- "-$pgid" 2>/dev/null || true
    local waited=0
    while kill -0 -- "-$pgid" 2>/dev/null; do
        if ((waited >= STOP_TIMEOUT * 10)); then
            say "still running after ${STOP_TIMEOUT}s; killing process group $pgid"
            kill -KILL -- "-$pgid" 2>/dev/null || true
            break
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    rm -f "$PID_FILE" "$HOST_FILE"
    say "stopped (pgid $pgid)"
}

status() {
    if running; then
        echo "running at $(cat "$HOST_FILE" 2>/dev/null || echo '(starting)') (pgid $(cat "$PID_FILE"))"
    else
        echo "not running"
        return 1
    fi
}

host() {
    running && [[ -f "$HOST_FILE" ]] || { say "not running"; return 1; }
    cat "$HOST_FILE"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    host) host ;;
    *)
        echo "usage: $0 {start|stop|status|host}" >&2
        exit 2
        ;;
esac
