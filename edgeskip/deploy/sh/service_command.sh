#!/bin/sh
# Service functions for a user-given command, sourced in front of transaction.sh (which defines `running`
# and DIR). The command runs with setsid nohup; its pid is in DIR/edgeskip.pid, its output in
# DIR/service.log. Environment: SVC_COMMAND (the command line, its placeholders already filled in).
: "${SVC_COMMAND:?}"

svc_install() { :; }
svc_pid() { p=$(cat "$DIR/edgeskip.pid" 2>/dev/null); case "$p" in ''|*[!0-9]*) return 1;; esac; echo "$p"; }
svc_stop() {  # the whole process group (setsid made the server its leader), TERM then KILL after 10 s
  p=$(svc_pid) || { rm -f "$DIR/edgeskip.pid"; return 0; }
  kill -TERM "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null
  i=0; while running "$p" && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
  running "$p" && { kill -KILL "-$p" 2>/dev/null || kill -KILL "$p" 2>/dev/null; sleep 0.2; }
  rm -f "$DIR/edgeskip.pid"
}
svc_start() {
  echo "--- $(date) starting $(readlink "$DIR/current")" >> "$DIR/service.log"
  S=; command -v setsid >/dev/null 2>&1 && S=setsid
  # a subshell, so the server is not this script's child (it is reaped by init, never left a zombie)
  ( cd "$DIR" && $S nohup sh -c "$SVC_COMMAND" >> "$DIR/service.log" 2>&1 < /dev/null &
    echo $! > "$DIR/edgeskip.pid.tmp" && mv -f "$DIR/edgeskip.pid.tmp" "$DIR/edgeskip.pid" )
}
svc_alive() { p=$(svc_pid) && running "$p"; }
svc_log() {  # what the last start wrote (each start begins with a "--- " line)
  awk '/^--- /{n = 0} {line[n++] = $0} END {for (i = (n > 20 ? n - 20 : 0); i < n; i++) print line[i]}' \
    "$DIR/service.log" 2>/dev/null
}
