#!/bin/sh
# The deploy or rollback transaction, run on the board (POSIX sh) by launch.sh, detached with setsid nohup
# so that it finishes even if ssh drops. edgeskip sends it with the service manager's functions in front
# (service_*.sh: svc_install, svc_stop, svc_start, svc_alive, svc_log).
#
# Its values come from the environment:
#   DIR      the deploy directory on the board (absolute)     MODE     deploy or rollback
#   NEW      the bundle to switch to (deploy)                  TIMEOUT  seconds to wait for ready
#   PORT     the server's port                                 PY       the board's python
#   SERVICE  1 to restart the service, 0 to switch links only  STATUS   the status file to write
#   SETTINGS_JSON  the service settings, saved as DIR/service.json
#
# It ends by writing STATUS: state= (ready, switched, rolled-back, rollback-failed, failed, busy),
# current=, previous= and message= lines.
set -u
: "${DIR:?}" "${MODE:?}" "${NEW?}" "${TIMEOUT:?}" "${PORT:?}" "${PY:?}" "${SERVICE:?}" "${STATUS:?}"
SETTINGS_JSON=${SETTINGS_JSON:-"{}"}
# SUDO is used by the service functions in front of this script.
# shellcheck disable=SC2034
if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO="sudo -n"; fi
cd "$DIR" || exit 1

finish() {  # STATE MESSAGE, written atomically: the client waits for this file
  { echo "state=$1"; echo "current=$(readlink current 2>/dev/null)"; echo "previous=$(readlink previous 2>/dev/null)"
    echo "message=$2"; } > "$STATUS.tmp" && mv -f "$STATUS.tmp" "$STATUS"
}
swap() { mv -T "$1" "$2" 2>/dev/null || "$PY" -c 'import os, sys; os.replace(sys.argv[1], sys.argv[2])' "$1" "$2"; }
setlink() {  # NAME TARGET: repoint NAME atomically (remove it when TARGET is empty)
  if [ -z "$2" ]; then rm -f "$1"; else ln -sfn "$2" ".$1.tmp" && swap ".$1.tmp" "$1"; fi
}
running() { kill -0 "$1" 2>/dev/null && [ "$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)" != Z ]; }
probe() {
  url="http://127.0.0.1:$PORT/v2/health/ready"
  if command -v curl >/dev/null 2>&1; then curl -fsS -m 2 -o /dev/null "$url" 2>/dev/null
  else "$PY" -c 'import sys, urllib.request; sys.exit(urllib.request.urlopen(sys.argv[1], timeout=2).status != 200)' \
    "$url" 2>/dev/null; fi
}
wait_ready() {  # 0 ready, 1 not ready in time, 2 the server exited
  end=$(( $(date +%s) + TIMEOUT ))
  while [ "$(date +%s)" -lt "$end" ]; do
    probe && return 0
    if ! svc_alive; then sleep 0.3; probe && return 0; return 2; fi
    sleep 0.3
  done
  return 1
}
# One deploy or rollback at a time; a lock whose owner is gone is stale.
if ! mkdir .lock 2>/dev/null; then
  other=$(cat .lock/pid 2>/dev/null)
  if [ -n "$other" ] && running "$other"; then
    finish busy "another deploy or rollback (pid $other) is running on the board; try again when it is done"; exit 0
  fi
  rm -rf .lock; mkdir .lock || { finish busy "could not take the lock $DIR/.lock"; exit 0; }
fi
echo $$ > .lock/pid
trap 'rm -rf "$DIR/.lock"' EXIT
trap 'exit 1' INT TERM

old_cur=$(readlink current 2>/dev/null || true)
old_prev=$(readlink previous 2>/dev/null || true)
if [ "$MODE" = rollback ]; then
  if [ -z "$old_prev" ] || [ ! -d "$old_prev" ]; then
    finish failed "there is no previous bundle to roll back to"; exit 0
  fi
  target=$old_prev; new_prev=$old_cur
else
  target=$NEW
  if [ "$old_cur" = "$NEW" ]; then new_prev=$old_prev; else new_prev=$old_cur; fi
fi

if [ "$SERVICE" = 1 ]; then
  if ! out=$(svc_install 2>&1); then
    finish failed "could not install the service: $(echo "$out" | tail -n 3 | tr '\n' ' ')"; exit 0
  fi
  printf '%s\n' "$SETTINGS_JSON" > service.json.tmp && mv -f service.json.tmp service.json
fi
# previous first, then current: a crash in between leaves both naming what serves now.
if ! { setlink previous "$new_prev" && setlink current "$target"; }; then
  setlink current "$old_cur"; setlink previous "$old_prev"; finish failed "could not switch the links in $DIR"; exit 0
fi
if [ "$SERVICE" != 1 ]; then finish switched "current is $target (no service was restarted)"; exit 0; fi

svc_stop
if probe; then  # something else answers on the port: a "ready" from it would prove nothing
  setlink current "$old_cur"; setlink previous "$old_prev"; [ -z "$old_cur" ] || svc_start
  finish failed "port $PORT still answers after the service was stopped: another server holds it (stop it, or \
deploy on another port)"
  exit 0
fi
svc_start; wait_ready; rc=$?
if [ $rc = 0 ]; then
  if [ "$MODE" = deploy ]; then  # keep only what current and previous name
    for b in bundles/*; do [ "$b" = "$target" ] || [ "$b" = "$new_prev" ] || rm -rf "$b"; done
  fi
  finish ready "$target is serving on port $PORT"; exit 0
fi
if [ $rc = 2 ]; then why="the server exited"; else why="it was not ready within ${TIMEOUT} s"; fi
svc_log > "$STATUS.log" 2>&1
setlink current "$old_cur"; setlink previous "$old_prev"
svc_stop
if [ -z "$old_cur" ]; then
  finish failed "$target did not become ready ($why); nothing was deployed before, so the service is stopped"; exit 0
fi
back="rolled back to"; [ "$MODE" = deploy ] || back="went back to"
svc_start
if wait_ready; then finish rolled-back "$target did not become ready ($why); $back $old_cur, which is serving again"
else finish rollback-failed "$target did not become ready ($why); $back $old_cur, but it is not ready either"; fi
