#!/usr/bin/env bash
# Build runc, pinned, as a static binary with seccomp into the cache folder.
# runc is an image input like the kernel: the builder copies it into the
# root as /usr/lib/slate/runc and finds it at
#
#     $SLATE_CACHE/runc/v1.5.3/runc      (sha256 in runc.sha256 beside it)
#
# Debian's runc is too old (1.1.5 lacks the November 2025 breakout fixes),
# so the release is built from the Go module proxy. The module zip is checked
# against a pinned hash (the go.sum "h1:" line of the release) before the
# build; its dependencies are checked by the go command against runc's own
# go.sum and the checksum database. cgo is needed (libcontainer's nsenter is
# C), linked statically with Debian's libseccomp.a (libseccomp-dev).
#
# Idempotent: a binary whose recorded sha256 matches is left alone. The
# build is reproducible for the same Go toolchain and libseccomp (-trimpath,
# no VCS stamping, stripped).
#
# Usage: scripts/fetch-runc.sh [CACHE_DIR]   (default: $SLATE_CACHE or .cache)
# Needs: go, gcc, pkg-config, libc6-dev, libseccomp-dev (scripts/setup.sh).
set -euo pipefail

version=v1.5.3
module=github.com/opencontainers/runc
# go.sum hash of the module zip of $module@$version
modsum="h1:y3GUIW7J0Gxd+tCFfWR6L1YDnhHiNR1BGRx1J50+VnA="

cache="${1:-${SLATE_CACHE:-.cache}}"
mkdir -p "$cache"
cache="$(cd "$cache" && pwd)"
dest="$cache/runc/$version"

say() { echo "fetch-runc: $*"; }
die() { echo "fetch-runc: $*" >&2; exit 1; }

if [ -x "$dest/runc" ] && [ -f "$dest/runc.sha256" ] && (cd "$dest" && sha256sum --check --status runc.sha256); then
	say "runc $version already in $dest/runc ($(cut -d' ' -f1 "$dest/runc.sha256"))"
	exit 0
fi

need() { command -v "$1" >/dev/null 2>&1 || die "'$1' not found; install it (scripts/setup.sh installs gcc, pkg-config, libc6-dev and libseccomp-dev)"; }
command -v go >/dev/null 2>&1 || die "'go' not found; install Go (runc $version needs 1.25 or newer)"
need gcc
need pkg-config
need sha256sum
need readelf

# the static library, not the .so, is what a static link needs
libseccomp="$(gcc -print-file-name=libseccomp.a)"
[ -f "$libseccomp" ] || die "libseccomp.a not found by gcc; install libseccomp-dev"
libdir="$(cd "$(dirname "$libseccomp")" && pwd)"
[ -f "$libdir/pkgconfig/libseccomp.pc" ] || die "libseccomp.pc not found in $libdir/pkgconfig; install libseccomp-dev"

mkdir -p "$cache/runc"
tmp="$(mktemp -d "$cache/runc/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
# Go runs in the empty temporary folder, outside any module or workspace of
# the caller's. The compiler settings are fixed so that a caller's
# environment (or go env -w settings, which an empty variable would not
# override) cannot change the binary; these are Go's defaults.
export GOFLAGS=-buildvcs=false GOWORK=off CC=gcc CGO_CFLAGS='-O2 -g' CGO_LDFLAGS='-O2 -g'
cd "$tmp"

say "checking $module@$version against the pinned module hash"
got="$(go mod download -json "$module@$version" | sed -n 's/^[[:space:]]*"Sum": "\(.*\)",$/\1/p')"
[ -n "$got" ] || die "go mod download $module@$version gave no module hash"
[ "$got" = "$modsum" ] || die "$module@$version has module hash $got, want $modsum"

say "building runc $version (static, seccomp) with $(go env GOVERSION) and $(pkg-config --modversion libseccomp 2>/dev/null || echo '?') libseccomp; this takes minutes"
start=$SECONDS
GOBIN="$tmp/bin" CGO_ENABLED=1 PKG_CONFIG_PATH="$libdir/pkgconfig" \
	go install -trimpath -buildvcs=false \
	-tags "seccomp netgo osusergo" \
	-ldflags '-s -w -extldflags -static' \
	"$module@$version"
bin="$tmp/bin/runc"
[ -x "$bin" ] || die "go install left no runc in $tmp/bin"
say "built in $((SECONDS - start)) s"

# a dynamic binary would fail in the slot root, which has no libc
if readelf -l "$bin" | grep -q 'INTERP'; then
	die "built runc is dynamically linked (has a program interpreter)"
fi
# (outputs captured first: grep -q closing a pipe early would fail the
# pipeline under pipefail)
ver="$("$bin" --version)" || die "built runc does not run"
features="$("$bin" features)" || die "built runc fails 'runc features'"
grep -q '^libseccomp: ' <<<"$ver" || die "built runc does not report libseccomp in --version"
grep -A1 '"seccomp": *{' <<<"$features" | grep -q '"enabled": *true' || die "built runc has seccomp disabled or missing in 'runc features'"

mkdir -p "$dest"
(cd "$tmp/bin" && sha256sum runc) >"$tmp/runc.sha256"
# rename within one file system: a reader sees the old binary or the new
# one; the hash file goes last, so a crash in between means a rebuild
mv -f "$bin" "$dest/runc"
mv -f "$tmp/runc.sha256" "$dest/runc.sha256"
# what the binary was built from, for whoever wonders why a hash differs
printf 'module %s@%s %s\ngo %s\nlibseccomp %s\n' "$module" "$version" "$modsum" \
	"$(go env GOVERSION)" "$(pkg-config --modversion libseccomp 2>/dev/null || echo '?')" >"$dest/runc.info"
say "runc $version in $dest/runc ($(stat -c %s "$dest/runc") bytes, sha256 $(cut -d' ' -f1 "$dest/runc.sha256"))"
