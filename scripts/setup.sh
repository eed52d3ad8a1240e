#!/usr/bin/env bash
# Install what building and testing slate needs on a Debian machine, then
# fetch the kernel and systemd-boot into the cache and build runc there
# (gcc, pkg-config, libc6-dev and libseccomp-dev are for runc's static
# seccomp build; openssh-client is the ssh end-to-end test's client). Safe
# to run again.
set -euo pipefail

pkgs=(qemu-system-x86 qemu-utils ovmf systemd-boot-efi mtools dosfstools gdisk e2fsprogs kmod xorriso ca-certificates shellcheck gcc libseccomp-dev pkg-config libc6-dev openssh-client)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	echo "setup: installing ${missing[*]}"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

here="$(cd "$(dirname "$0")" && pwd)"
cache="${SLATE_CACHE:-$here/../.cache}"
"$here/fetch-kernel.sh" "$cache"
"$here/fetch-runc.sh" "$cache"
