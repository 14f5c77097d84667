#!/usr/bin/env bash
# setup-podman.sh - podman and the local baseline images the container tests build in.
#
#   bash .ci/setup-podman.sh && . /var/tmp/mlb-containers/env.sh
#
# Gives a Debian x86_64 machine (run as root, or through sudo) that reaches Debian's apt archive
# but no container registry:
#   - podman with runc, configured entirely under $CTR_HOME (nothing in /etc is changed);
#   - localhost/baseline-bookworm  (Debian 12: glibc 2.36, Python 3.11) and
#     localhost/baseline-bullseye  (Debian 11: glibc 2.31, Python 3.9), each with a C/C++
#     toolchain and Python headers, bootstrapped from Debian's archive with debootstrap.
# Idempotent: a second run takes about a second. From nothing: about 3-4 minutes.
#
# Knobs: CTR_HOME (default /var/tmp/mlb-containers), SUITES (default "bookworm bullseye"),
#        MIRROR (default: the host's Debian mirror), FORCE=1 (bootstrap the images again).
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
  exec sudo --preserve-env=CTR_HOME,SUITES,MIRROR,FORCE,GITHUB_ENV bash "$0" "$@"
fi

CTR_HOME=${CTR_HOME:-/var/tmp/mlb-containers}
SUITES=${SUITES:-bookworm bullseye}
FORCE=${FORCE:-0}
IMAGE_PKGS=python3,python3-dev,python3-venv,python3-pip,python3-setuptools,python3-wheel,gcc,g++,libc6-dev
export DEBIAN_FRONTEND=noninteractive

say() { printf 'setup-podman [%(%T)T] %s\n' -1 "$*"; }

# The host's Debian mirror, from deb822 sources or the classic sources.list.
mirror_uris() {
  sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/*.sources 2>/dev/null || true
  sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]\+\).*/\2/p' \
    /etc/apt/sources.list 2>/dev/null || true
}
MIRROR=${MIRROR:-$(mirror_uris | tr ' ' '\n' | grep -v security | grep . | head -n 1)}
if [ -z "$MIRROR" ]; then
  echo "setup-podman: no Debian mirror in /etc/apt/sources*; set MIRROR=http://.../debian" >&2
  exit 1
fi

install_packages() {
  # runc rather than crun: bookworm's crun refuses hosts with cgroup v1 and a hybrid v2 mount.
  local want="podman runc conmon netavark aardvark-dns iptables uidmap fuse-overlayfs catatonit debootstrap"
  local missing="" pkg
  for pkg in $want; do
    dpkg-query -W -f='${db:Status-Status}\n' "$pkg" 2>/dev/null | grep -qx installed \
      || missing="$missing $pkg"
  done
  [ -z "$missing" ] && return
  say "apt-get install$missing"
  apt-get -q -o DPkg::Lock::Timeout=600 update >/dev/null
  # shellcheck disable=SC2086
  apt-get -y -q -o DPkg::Lock::Timeout=600 install --no-install-recommends $missing >/dev/null
}

write_config() {
  mkdir -p "$CTR_HOME/etc" "$CTR_HOME/podman"
  local runtime=runc
  [ -f /sys/fs/cgroup/cgroup.controllers ] && runtime=crun   # pure cgroup v2
  # Rootful podman asks every container for nofile=1048576 and a huge nproc; without
  # CAP_SYS_RESOURCE setrlimit fails, so ask for no more than this shell's hard limits
  # (podman caps its own nproc at 32768).
  local nofile nproc
  nofile=$(ulimit -Hn); nproc=$(ulimit -Hu)
  [ "$nofile" = unlimited ] && nofile=1048576
  if [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; then nproc=32768; fi
  cat > "$CTR_HOME/etc/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$CTR_HOME/podman/storage"
runroot = "$CTR_HOME/podman/run"
EOF
  cat > "$CTR_HOME/etc/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "$runtime"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "$CTR_HOME/podman/libpod-tmp"
volume_path = "$CTR_HOME/podman/volumes"
[network]
network_backend = "netavark"
network_config_dir = "$CTR_HOME/podman/networks"
EOF
  cat > "$CTR_HOME/env.sh" <<EOF
export CONTAINERS_CONF=$CTR_HOME/etc/containers.conf
export CONTAINERS_STORAGE_CONF=$CTR_HOME/etc/storage.conf
EOF
}

# debootstrap prints nothing useful for a minute or two: report its stage every 20 seconds.
bootstrap() {
  local suite=$1 root=$2 log=$3 started=$SECONDS
  debootstrap --variant=minbase --include="$IMAGE_PKGS" "$suite" "$root" "$MIRROR" >"$log" 2>&1 &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 2
    if [ $(((SECONDS - started) % 20)) -lt 2 ]; then
      say "  $suite: $((SECONDS - started)) s, $(grep '^I: ' "$log" | tail -n 1 | cut -c4-70)"
    fi
  done
  if ! wait "$pid"; then
    tail -n 20 "$log" >&2
    echo "setup-podman: debootstrap of $suite failed (log: $log)" >&2
    exit 1
  fi
}

build_image() {
  local suite=$1 image=localhost/baseline-$1
  local tarball="$CTR_HOME/baseline-$suite.rootfs.tar"
  if [ "$FORCE" = 1 ] || [ ! -s "$tarball" ]; then
    local root="$CTR_HOME/baseline-$suite.rootfs.tmp"
    rm -rf "$root" && mkdir -p "$root"
    say "bootstrapping Debian $suite with a C/C++ toolchain and Python (1-2 minutes)"
    bootstrap "$suite" "$root" "$CTR_HOME/debootstrap-$suite.log"
    local security=${MIRROR%/debian}/debian-security
    {
      echo "deb $MIRROR $suite main"
      echo "deb $MIRROR $suite-updates main"
      echo "deb $security $suite-security main"
    } > "$root/etc/apt/sources.list"
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/*
    mkdir -p "$root/var/lib/apt/lists/partial" "$root/io"
    tar --numeric-owner -C "$root" -cf "$tarball.tmp" .
    rm -rf "$root"
    mv "$tarball.tmp" "$tarball"
    podman rmi -f "$image" >/dev/null 2>&1 || true
  fi
  if ! podman image exists "$image"; then
    say "importing $image"
    podman import -q --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' \
      "$tarball" "$image:latest" >/dev/null
  fi
  local facts
  facts=$(podman run --rm --network=none "$image" python3 -c \
    'import platform, sys; print("Python %d.%d" % sys.version_info[:2], "glibc", platform.libc_ver()[1])')
  say "$image ready: $facts"
}

install_packages
write_config
# shellcheck disable=SC1091
. "$CTR_HOME/env.sh"
for suite in $SUITES; do
  build_image "$suite"
done

# GitHub Actions: later steps get the podman configuration without sourcing env.sh.
if [ -n "${GITHUB_ENV:-}" ]; then
  sed -n 's/^export //p' "$CTR_HOME/env.sh" >> "$GITHUB_ENV"
fi
say "podman configuration: . $CTR_HOME/env.sh"
