#!/usr/bin/env bash
# setup-qemu.sh - run foreign-architecture and musl wheels here: qemu user emulation
# registered with binfmt_misc, Debian's arm64 libraries and Python 3.11 (multiarch), and a
# CPython 3.11 built on musl from Debian's python3.11 source (no distribution ships one that
# Debian, PyPI or npm can install). Idempotent: a second run only checks. Run as root on
# Debian bookworm; the first run takes a few minutes (the musl CPython build).
#
#   bash .ci/setup-qemu.sh   # then $ROOT/aarch64/bin/python3.11, $ROOT/musl-x86_64/bin/python3.11
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
# A musl CPython: Debian's python3.11 source (through a private deb-src list, leaving the
# system's apt sources alone) built with musl-gcc. musl-gcc answers -print-multiarch like
# Debian's gcc, which CPython's configure rejects next to a musl triplet and which makes
# setup.py add glibc's include folder: a musl system's gcc prints nothing, and so does the
# wrapper.
musl_python="$ROOT/musl-x86_64/bin/python3.11"
if [ ! -x "$musl_python" ] && [ "$(uname -m)" = x86_64 ]; then
  work=$(mktemp -d /var/tmp/mlbackend-musl-python.XXXXXX)
  chown _apt "$work" 2>/dev/null || true
  mkdir -p "$work/parts" "$work/lists/partial"
  cat > "$work/parts/src.sources" <<'SOURCES'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
  apt_src=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$work/parts"
           -o "Dir::State::Lists=$work/lists")
  say "downloading Debian's python3.11 source"
  apt-get "${apt_src[@]}" -q update >/dev/null
  (cd "$work" && apt-get "${apt_src[@]}" -q source --download-only python3.11 >/dev/null 2>&1)
  tar -xzf "$work"/python3.11_*.orig.tar.gz -C "$work"
  # musl-gcc sees no kernel headers; the modules that need some get Debian's (libc-free).
  mkdir -p "$work/kernel"
  ln -s /usr/include/linux /usr/include/asm-generic "$work/kernel/"
  ln -s "/usr/include/$(gcc -print-multiarch)/asm" "$work/kernel/asm"
  cat > "$work/musl-cc" <<WRAPPER
#!/bin/sh
for a in "\$@"; do case "\$a" in --print-multiarch|-print-multiarch) exit 0 ;; esac; done
exec musl-gcc "\$@" -idirafter "$work/kernel"
WRAPPER
  chmod +x "$work/musl-cc"
  # setup.py also asks dpkg-architecture for glibc's include folder; on musl it has none.
  # Neither pkg-config nor zlib.h may bring in glibc-built libraries: binascii would link
  # glibc's libz and fail to build, and zipfile (pip, pytest) needs binascii.
  mkdir -p "$work/bin"
  printf '#!/bin/sh\nexit 1\n' > "$work/bin/dpkg-architecture"
  chmod +x "$work/bin/dpkg-architecture"
  say "building CPython 3.11 on musl into $ROOT/musl-x86_64 (a few minutes; log: $work/build.log)"
  (cd "$work"/Python-3.11.* && export PATH="$work/bin:$PATH" &&
    CC="$work/musl-cc" PKG_CONFIG_LIBDIR="$work/no-pkgconfig" ac_cv_header_zlib_h=no \
      ./configure --prefix="$ROOT/musl-x86_64" --without-ensurepip --disable-test-modules &&
    make -j"$(nproc)" && make install DESTDIR="$work/dest") > "$work/build.log" 2>&1 ||
    { tail -n 30 "$work/build.log" >&2; say "the musl CPython build failed" >&2; exit 1; }
  # installed aside, then moved: an interrupted run leaves no half-installed Python behind
  rm -rf "$ROOT/musl-x86_64"
  mv "$work/dest$ROOT/musl-x86_64" "$ROOT/musl-x86_64"
  rm -rf "$work"
fi
if [ -x "$musl_python" ]; then
  say "$musl_python: $("$musl_python" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')"
fi

if "$python" -c 'import platform, sys; sys.exit(platform.machine() != "aarch64")' 2>/dev/null; then
  say "$python runs under qemu ($("$python" -c 'import sys; print(sys.version.split()[0])'))"
else
  say "$python does not run: is qemu-$ARCH registered with binfmt_misc?" >&2
  exit 1
fi
