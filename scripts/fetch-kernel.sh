#!/usr/bin/env bash
# Fetch the default slate kernel (Debian's linux-image-amd64 dependency) and
# systemd-boot (systemd-boot-efi) as Debian packages and unpack them into a
# cache folder with dpkg -x. Nothing is installed on the host. Idempotent: a
# package that is already unpacked is left alone.
#
# Usage: scripts/fetch-kernel.sh [CACHE_DIR]   (default: $SLATE_CACHE or .cache)
set -euo pipefail

cache="${1:-${SLATE_CACHE:-.cache}}"
mkdir -p "$cache"
cache="$(cd "$cache" && pwd)"

need() { command -v "$1" >/dev/null 2>&1 || { echo "fetch-kernel: '$1' not found; this script needs a Debian host with apt-get and dpkg" >&2; exit 1; }; }
need apt-get
need apt-cache
need dpkg

# resolve linux-image-amd64 to the versioned package it depends on
resolve() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'; }
kpkg="$(resolve)"
if [ -z "$kpkg" ] && [ "$(id -u)" -eq 0 ]; then
	# a fresh machine may have no package lists yet
	apt-get update -qq >/dev/null
	kpkg="$(resolve)"
fi
if [ -z "$kpkg" ]; then
	echo "fetch-kernel: apt-cache does not know linux-image-amd64; run 'apt-get update' first" >&2
	exit 1
fi

fetch() { # fetch PKG DEST
	local pkg="$1" dest="$2"
	if [ -f "$dest/.slate-unpacked" ] && [ "$(cat "$dest/.slate-unpacked")" = "$pkg" ]; then
		echo "fetch-kernel: $pkg already in $dest"
		return
	fi
	local tmp
	tmp="$(mktemp -d "$cache/.fetch.XXXXXX")"
	trap 'rm -rf "$tmp"' RETURN
	echo "fetch-kernel: downloading $pkg"
	(cd "$tmp" && apt-get -o APT::Sandbox::User=root download -q "$pkg" >/dev/null)
	mkdir -p "$tmp/root"
	dpkg -x "$tmp"/*.deb "$tmp/root"
	rm -rf "$dest"
	mkdir -p "$(dirname "$dest")"
	mv "$tmp/root" "$dest"
	echo "$pkg" > "$dest/.slate-unpacked"
	echo "fetch-kernel: unpacked $pkg into $dest"
}

fetch "$kpkg" "$cache/kernel/linux-image-amd64"
fetch systemd-boot-efi "$cache/systemd-boot"

ls "$cache"/kernel/linux-image-amd64/boot/vmlinuz-* >/dev/null
ls "$cache"/systemd-boot/usr/lib/systemd/boot/efi/systemd-bootx64.efi >/dev/null
