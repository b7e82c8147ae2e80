#!/bin/sh
# Prints "SHA256  NAME" for each NAME given that exists under DIR (run over ssh as `sh -s -- DIR NAME...`).
# Uses sha256sum, else the board's python3; missing files are left out (the caller reports them).
cd "$1" 2>/dev/null || exit 0
shift
if command -v sha256sum >/dev/null 2>&1; then
  sha256sum -- "$@" 2>/dev/null
else
  python3 - "$@" <<'PY'
import hashlib
import sys

for name in sys.argv[1:]:
    try:
        with open(name, "rb") as f:
            print(hashlib.sha256(f.read()).hexdigest() + "  " + name)
    except OSError:
        pass
PY
fi
true
