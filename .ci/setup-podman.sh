#!/bin/bash
# setup-podman.sh - give CI (or a fresh machine) podman and the local baseline image
# localhost/baseline-bookworm that the container tests build in, then say where env.sh is.
# Idempotent: a second run takes about a second. Runs the shared recipe that sits beside
# the clone (../shared/containers/setup-podman.sh) with the packages a C/C++ build needs.
#
#   .ci/setup-podman.sh && . /var/tmp/mlb-containers/env.sh
#
# Knobs: CTR_HOME, IMAGE, EXTRA_PKGS, FORCE=1 (passed to the shared recipe),
#        SHARED_SETUP (path of the shared recipe).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED_SETUP=${SHARED_SETUP:-$repo/../shared/containers/setup-podman.sh}
export CTR_HOME=${CTR_HOME:-/var/tmp/mlb-containers}
export IMAGE=${IMAGE:-localhost/baseline-bookworm}
export EXTRA_PKGS=${EXTRA_PKGS:-gcc,g++,libc6-dev,python3-dev,python3-venv,python3-pip,python3-setuptools,python3-wheel}

if [ ! -f "$SHARED_SETUP" ]; then
  echo "setup-podman: $SHARED_SETUP not found (expected ../shared beside the clone); set SHARED_SETUP" >&2
  exit 1
fi
if [ "$(id -u)" = 0 ]; then
  bash "$SHARED_SETUP"
else
  sudo --preserve-env=CTR_HOME,IMAGE,EXTRA_PKGS,FORCE,MIRROR bash "$SHARED_SETUP"
fi

# GitHub Actions: later steps get the podman config without sourcing env.sh themselves.
if [ -n "${GITHUB_ENV:-}" ]; then
  sed -n 's/^export //p' "$CTR_HOME/env.sh" >> "$GITHUB_ENV"
fi
echo "setup-podman: image $IMAGE ready; podman config: . $CTR_HOME/env.sh"
