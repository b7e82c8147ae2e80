#!/bin/sh
# Starts a transaction on the board and waits for its result (run over ssh as `sh -c`).
# stdin: the transaction script (service functions + transaction.sh). Environment: TXN (a folder for the
# transaction's files), TOKEN (this transaction's name), STATUS (the status file the transaction writes),
# plus everything transaction.sh reads, which the detached transaction inherits.
#
# The transaction runs detached (setsid nohup): if this ssh session drops, only the waiting stops and the
# transaction runs to its end. Prints the status file, a "log<<" line, then the server log of a failure
# (or, if the transaction died without a status, the end of its output as state=died).
set -e
: "${TXN:?}" "${TOKEN:?}" "${STATUS:?}"
mkdir -p "$TXN"
cat > "$TXN/$TOKEN.sh"
S=
command -v setsid >/dev/null 2>&1 && S=setsid
$S nohup sh "$TXN/$TOKEN.sh" > "$TXN/$TOKEN.out" 2>&1 < /dev/null &
pid=$!
set +e
while [ ! -f "$STATUS" ] && kill -0 "$pid" 2>/dev/null \
    && [ "$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -c1)" != Z ]; do
  sleep 0.2
done
if [ -f "$STATUS" ]; then
  cat "$STATUS"; echo 'log<<'; cat "$STATUS.log" 2>/dev/null
else
  echo 'state=died'; echo 'log<<'; tail -n 5 "$TXN/$TOKEN.out"
fi
rm -f "$TXN/$TOKEN".*
