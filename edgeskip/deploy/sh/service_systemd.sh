#!/bin/sh
# Service functions for systemd, sourced in front of transaction.sh (which defines `running`, DIR and SUDO).
# Environment: UNIT (the unit's name), UNIT_TEXT (the unit file, with @EXE@ and @USER@ filled in here,
# where the board's PATH and user are known), SVC_PYTHON (the --python given, or empty).
: "${UNIT:?}" "${UNIT_TEXT:?}" "${SVC_PYTHON?}"
UNIT_FILE=/etc/systemd/system/$UNIT

svc_exe() {  # the server's command: SVC_PYTHON if given, else edgeskip-runtime on PATH, else python3 -m
  if [ -n "$SVC_PYTHON" ]; then echo "$(command -v "$SVC_PYTHON") -m edgeskip_runtime.cli"
  elif command -v edgeskip-runtime >/dev/null 2>&1; then command -v edgeskip-runtime
  elif command -v python3 >/dev/null 2>&1; then echo "$(command -v python3) -m edgeskip_runtime.cli"
  else echo "neither edgeskip-runtime nor python3 is on PATH" >&2; return 1; fi
}
svc_install() {
  if ! command -v systemctl >/dev/null 2>&1; then
    echo "systemctl not found: this board has no systemd (use the command service manager)" >&2; return 1
  fi
  exe=$(svc_exe) || return 1
  user=$(id -un)
  printf '%s\n' "$UNIT_TEXT" | sed -e "s|@EXE@|$exe|" -e "s|@USER@|$user|" > "$DIR/.txn/unit.tmp" || return 1
  $SUDO cp "$DIR/.txn/unit.tmp" "$UNIT_FILE.tmp" && $SUDO chmod 0644 "$UNIT_FILE.tmp" \
    && $SUDO mv -f "$UNIT_FILE.tmp" "$UNIT_FILE" && $SUDO systemctl daemon-reload \
    && $SUDO systemctl enable --quiet "$UNIT"
}
svc_stop() { $SUDO systemctl stop "$UNIT" 2>/dev/null || true; }
svc_start() { $SUDO systemctl restart "$UNIT"; }
svc_alive() { systemctl is-active --quiet "$UNIT"; }
svc_log() {
  journalctl -u "$UNIT" -n 20 --no-pager -o cat 2>/dev/null \
    || $SUDO journalctl -u "$UNIT" -n 20 --no-pager -o cat
}
