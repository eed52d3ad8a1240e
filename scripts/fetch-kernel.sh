#!/usr/bin/env bash
# Fetch the default slate kernel (Debian's linux-image-amd64 dependency) and
# systemd-boot (systemd-boot-efi) into a cache folder: a wrapper of
# `slate kernel fetch`, which resolves, verifies and unpacks the packages
# in Go (no apt-get or dpkg needed; see README "slate kernel fetch").
# Idempotent: a package that is already unpacked is left alone.
#
# Usage: scripts/fetch-kernel.sh [CACHE_DIR]   (default: $SLATE_CACHE or .cache)
set -euo pipefail

cache="${1:-${SLATE_CACHE:-.cache}}"
mkdir -p "$cache"
cache="$(cd "$cache" && pwd)"

command -v go >/dev/null 2>&1 || { echo "fetch-kernel: 'go' not found (slate kernel fetch is run from the source tree)" >&2; exit 1; }
cd "$(dirname "$0")/.."
go run ./cmd/slate kernel fetch --cache "$cache"

ls "$cache"/kernel/linux-image-amd64/boot/vmlinuz-* >/dev/null
ls "$cache"/systemd-boot/usr/lib/systemd/boot/efi/systemd-bootx64.efi >/dev/null
