#!/usr/bin/env bash
# setup-qemu.sh - run foreign-architecture wheels here: qemu user emulation registered with
# binfmt_misc, Debian's arm64 libraries and Python 3.11 (multiarch), and musl for x86_64.
# Idempotent: a second run only checks. Run as root on Debian bookworm.
#
#   bash .ci/setup-qemu.sh      # then: /usr/local/lib/mlbackend-cross/aarch64/bin/python3.11
#
# python3.11:arm64 cannot be installed beside python3.11:amd64 (Multi-Arch: allowed), so only
# its interpreter binary is taken from the package; the standard library, its extension modules
# and pyconfig.h come from the Multi-Arch: same packages apt installs for arm64.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
ROOT=${MLBACKEND_CROSS_ROOT:-/usr/local/lib/mlbackend-cross}
DEB_ARCH=arm64
ARCH=aarch64
say() { echo "setup-qemu: $*"; }

installed() {
  dpkg-query -W -f='${db:Status-Status}\n' "$1" 2>/dev/null | grep -qx installed
}

if ! dpkg --print-foreign-architectures | grep -qx "$DEB_ARCH"; then
  say "adding the Debian architecture $DEB_ARCH"
  dpkg --add-architecture "$DEB_ARCH"
fi
packages="qemu-user-static musl musl-tools libc6:$DEB_ARCH libpython3.11-stdlib:$DEB_ARCH
          libpython3.11:$DEB_ARCH libpython3.11-dev:$DEB_ARCH"
missing=""
for pkg in $packages; do installed "$pkg" || missing="$missing $pkg"; done
if [ -n "$missing" ]; then
  say "apt-get update"
  apt-get -q update >/dev/null
  say "installing$missing"
  # shellcheck disable=SC2086
  apt-get -y -q install --no-install-recommends $missing >/dev/null
fi

python="$ROOT/$ARCH/bin/python3.11"
if [ ! -x "$python" ]; then
  say "unpacking the $DEB_ARCH python3.11 interpreter into $ROOT/$ARCH"
  tmp=$(mktemp -d)
  chown _apt "$tmp" 2>/dev/null || true  # apt downloads as _apt when it can
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && apt-get -q download "python3.11-minimal:$DEB_ARCH" >/dev/null)
  dpkg-deb -x "$tmp"/python3.11-minimal_*.deb "$tmp/root"
  mkdir -p "$ROOT/$ARCH/bin"
  install -m 0755 "$tmp/root/usr/bin/python3.11" "$python.tmp"
  mv "$python.tmp" "$python"
fi

# binfmt_misc makes the kernel hand aarch64 executables to qemu, so pip --python and venvs
# work unchanged. The F flag opens qemu at registration: it then works in any mount namespace.
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
  say "mounting binfmt_misc"
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || true
fi
if [ ! -e "/proc/sys/fs/binfmt_misc/qemu-$ARCH" ]; then
  conf=/usr/lib/binfmt.d/qemu-$ARCH.conf
  if [ -e /proc/sys/fs/binfmt_misc/register ] && [ -f "$conf" ]; then
    say "registering qemu-$ARCH with binfmt_misc"
    line=$(grep -v '^#' "$conf" | head -n1)
    case "$line" in *:F) ;; *:*) line="${line}F" ;; esac
    printf '%s' "$line" > /proc/sys/fs/binfmt_misc/register
  else
    say "binfmt_misc is not available: run $ARCH programs as qemu-$ARCH-static -L / PROGRAM" >&2
  fi
fi
if "$python" -c 'import platform, sys; sys.exit(platform.machine() != "aarch64")' 2>/dev/null; then
  say "$python runs under qemu ($("$python" -c 'import sys; print(sys.version.split()[0])'))"
else
  say "$python does not run: is qemu-$ARCH registered with binfmt_misc?" >&2
  exit 1
fi
