#!/usr/bin/env bash
# A Docker engine for the project, from the project's own scripts.
#
#   scripts/docker.sh up      use the machine's engine if one answers, else start our own
#   scripts/docker.sh down    stop the engine `up` started (never one we did not start)
#   scripts/docker.sh status  print the endpoint in use and whether it answers (exit 0/1)
#   scripts/docker.sh env     print `export DOCKER_HOST=...` for the endpoint in use
#
# The hub reads the endpoint in use from $VISITING_RUN_DIR/docker-endpoint.
set -euo pipefail

RUN_DIR=${VISITING_RUN_DIR:-/run/visiting}
SYSTEM_ENDPOINT=${VISITING_SYSTEM_DOCKER:-unix:///var/run/docker.sock}
OWN_SOCK=$RUN_DIR/docker.sock
OWN_ENDPOINT=unix://$OWN_SOCK
PIDFILE=$RUN_DIR/dockerd.pid
EXEC_ROOT=$RUN_DIR/docker-exec
LOG=$RUN_DIR/dockerd.log
ENDPOINT_FILE=$RUN_DIR/docker-endpoint
DATA_ROOT=${VISITING_DOCKER_DATA_ROOT:-/var/lib/visiting-docker}
# The storage driver the data root was first set up with: images live in that
# driver's layout, so a later start must not silently switch and "lose" them.
DRIVER_FILE=$DATA_ROOT/visiting-storage-driver
START_TIMEOUT=${VISITING_DOCKER_TIMEOUT:-60}
STOP_TIMEOUT=60

log() { printf '[docker] %s\n' "$*" >&2; }
die() { printf '[docker] error: %s\n' "$*" >&2; exit 1; }

# The client from PATH may be newer than Debian's daemon; API negotiation copes.
answers() { docker -H "$1" info >/dev/null 2>&1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# --- the engine we start ----------------------------------------------------

own_pid() {
  # A pid is ours only while the pid file names a live dockerd: pids get reused.
  local pid
  [ -s "$PIDFILE" ] || return 1
  pid=$(cat "$PIDFILE")
  [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "dockerd.*--pidfile $PIDFILE" || return 1
  echo "$pid"
}

install_engine() {
  local pkgs=()
  # Any docker client will do (one may come from elsewhere); the engine is Debian's.
  command -v dockerd >/dev/null && command -v docker >/dev/null || pkgs+=(docker.io)
  command -v iptables >/dev/null || pkgs+=(iptables)
  ((${#pkgs[@]})) || return 0
  log "installing Debian packages: ${pkgs[*]}"
  # No init system here, and we start dockerd ourselves: keep the package's
  # maintainer scripts from starting a second engine on /var/run/docker.sock.
  local made_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
    as_root chmod +x /usr/sbin/policy-rc.d
    made_policy=1
  fi
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
    "${pkgs[@]}" >/dev/null || { [ -z "$made_policy" ] || as_root rm -f /usr/sbin/policy-rc.d; die "apt-get install ${pkgs[*]} failed"; }
  [ -z "$made_policy" ] || as_root rm -f /usr/sbin/policy-rc.d
}

check_iptables() {
  # Docker's bridge networks and --internal isolation are iptables rules; an
  # engine started without them would run containers that are not isolated.
  if ! iptables -t nat -L -n >/dev/null 2>&1; then
    die "iptables does not work here ($(iptables -t nat -L -n 2>&1 | tail -1)); Docker networking needs it"
  fi
}

start_dockerd() {
  local driver=$1
  mkdir -p "$RUN_DIR" "$EXEC_ROOT" "$DATA_ROOT"
  rm -f "$OWN_SOCK" "$PIDFILE"
  printf '\n=== %s: starting dockerd (storage driver %s) ===\n' "$(date -Is)" "$driver" >>"$LOG"
  # setsid and stdio of its own: the engine must outlive the shell (or pytest)
  # that started it. Every other inherited descriptor is closed, since dockerd
  # would hold it for its whole life: a caller's lock file would stay locked.
  (
    for fd in /proc/"$BASHPID"/fd/*; do
      fd=${fd##*/}
      if ((fd > 2)); then eval "exec $fd>&-"; fi
    done
    exec setsid --wait dockerd \
      --host "$OWN_ENDPOINT" \
      --pidfile "$PIDFILE" \
      --data-root "$DATA_ROOT" \
      --exec-root "$EXEC_ROOT" \
      --storage-driver "$driver" \
      </dev/null >>"$LOG" 2>&1
  ) &
  local launcher=$! waited=0
  while ((waited < START_TIMEOUT)); do
    if answers "$OWN_ENDPOINT"; then return 0; fi
    # dockerd exits at once when the storage driver or networking cannot start.
    kill -0 "$launcher" 2>/dev/null || return 1
    sleep 1
    waited=$((waited + 1))
  done
  log "dockerd did not answer within ${START_TIMEOUT}s; stopping it"
  kill "$launcher" 2>/dev/null || true
  return 1
}

up() {
  # Two callers at once (images.sh and a test fixture) must not both start one.
  mkdir -p "$RUN_DIR" 2>/dev/null || die "cannot create $RUN_DIR (run as root)"
  exec 8>"$RUN_DIR/docker.lock"
  flock 8
  # Ours first when it runs: the images built on it live in its data root, and
  # the hub must not be switched to another engine under its feet.
  if own_pid >/dev/null && answers "$OWN_ENDPOINT"; then
    log "dockerd already running (pid $(own_pid)) on $OWN_ENDPOINT"
    record_endpoint "$OWN_ENDPOINT"
    return 0
  fi
  if answers "$SYSTEM_ENDPOINT"; then
    log "an engine already answers on $SYSTEM_ENDPOINT; using it"
    record_endpoint "$SYSTEM_ENDPOINT"
    return 0
  fi
  [ "$(id -u)" -eq 0 ] || die "starting dockerd needs root (run: sudo $0 up)"
  if own_pid >/dev/null; then
    die "dockerd (pid $(own_pid)) runs but does not answer on $OWN_ENDPOINT; see $LOG or run '$0 down'"
  fi
  install_engine
  check_iptables

  local driver
  driver=$(cat "$DRIVER_FILE" 2>/dev/null || echo overlay2)
  if ! start_dockerd "$driver"; then
    if [ "$driver" = overlay2 ] && [ ! -s "$DRIVER_FILE" ] &&
      tail -n 30 "$LOG" | grep -qiE 'overlay|storage driver|graphdriver'; then
      log "overlay2 does not work here; falling back to the vfs storage driver (slow, every layer a full copy)"
      driver=vfs
      start_dockerd "$driver" || fail_start
    else
      fail_start
    fi
  fi
  echo "$driver" >"$DRIVER_FILE"
  record_endpoint "$OWN_ENDPOINT"
  log "dockerd started (pid $(own_pid), storage driver $driver) on $OWN_ENDPOINT; log: $LOG"
}

fail_start() {
  log "dockerd failed to start; last lines of $LOG:"
  tail -n 25 "$LOG" >&2 || true
  exit 1
}

record_endpoint() {
  mkdir -p "$RUN_DIR"
  echo "$1" >"$ENDPOINT_FILE.tmp"
  mv "$ENDPOINT_FILE.tmp" "$ENDPOINT_FILE"
}

down() {
  local pid
  if ! pid=$(own_pid); then
    if [ -s "$PIDFILE" ]; then rm -f "$PIDFILE"; fi
    if [ "$(cat "$ENDPOINT_FILE" 2>/dev/null)" = "$OWN_ENDPOINT" ]; then rm -f "$ENDPOINT_FILE"; fi
    log "no dockerd started by this project is running; nothing to stop"
    return 0
  fi
  log "stopping dockerd (pid $pid)"
  kill -TERM "$pid"
  local waited=0
  while kill -0 "$pid" 2>/dev/null; do
    if ((waited >= STOP_TIMEOUT)); then
      die "dockerd (pid $pid) still running ${STOP_TIMEOUT}s after SIGTERM; see $LOG"
    fi
    sleep 1
    waited=$((waited + 1))
  done
  rm -f "$PIDFILE" "$OWN_SOCK"
  if [ "$(cat "$ENDPOINT_FILE" 2>/dev/null)" = "$OWN_ENDPOINT" ]; then rm -f "$ENDPOINT_FILE"; fi
  log "dockerd stopped"
}

# The endpoint in use: the recorded one, else whichever answers now.
current_endpoint() {
  if [ -s "$ENDPOINT_FILE" ]; then
    cat "$ENDPOINT_FILE"
  elif answers "$SYSTEM_ENDPOINT"; then
    echo "$SYSTEM_ENDPOINT"
  elif answers "$OWN_ENDPOINT"; then
    echo "$OWN_ENDPOINT"
  else
    return 1
  fi
}

status() {
  local ep
  if ! ep=$(current_endpoint); then
    echo "no Docker engine in use (run: $0 up)"
    return 1
  fi
  if answers "$ep"; then
    echo "$ep answers ($(docker -H "$ep" version -f 'engine {{.Server.Version}}' 2>/dev/null))"
  else
    echo "$ep does not answer"
    return 1
  fi
}

env_cmd() {
  local ep
  ep=$(current_endpoint) || die "no Docker engine in use (run: $0 up)"
  printf 'export DOCKER_HOST=%s\n' "$ep"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  env) env_cmd ;;
  *)
    echo "usage: $0 up|down|status|env" >&2
    exit 2
    ;;
esac
