#!/bin/sh
# Unpacks Debian packages of a foreign architecture into a folder: a sysroot for running a board's
# programs under qemu-user. `apt-get download` + `dpkg -x`, so nothing is installed on this machine;
# maintainer scripts do not run. Adds the architecture to dpkg first (root only).
# Exits 1 with a message when a package cannot be had (not root, a mirror out of reach).
# Usage: tests/tools/unpack_debian_packages.sh ARCH DEST PACKAGE...
set -eu
ARCH=$1
DEST=$2
shift 2
if [ "$(id -u)" != 0 ]; then
	echo "$ARCH packages: needs root once (dpkg --add-architecture $ARCH; apt-get download $*)"
	exit 1
fi
if ! dpkg --print-foreign-architectures | grep -qx "$ARCH"; then
	dpkg --add-architecture "$ARCH"
	apt-get update -q >/dev/null 2>&1 || true  # a mirror in sync for another architecture is not fatal
fi
DEBS=$(mktemp -d)
trap 'rm -rf "$DEBS"' EXIT
for p in "$@"; do
	(cd "$DEBS" && apt-get download -q "$p:$ARCH" >/dev/null 2>&1) || {
		apt-get update -q >/dev/null 2>&1 || true
		(cd "$DEBS" && apt-get download -q "$p:$ARCH" >/dev/null 2>&1)
	} || { echo "$ARCH packages: could not download $p:$ARCH from Debian"; exit 1; }
done
mkdir -p "$DEST"
for deb in "$DEBS"/*.deb; do
	dpkg -x "$deb" "$DEST"
done
