"""Build baselines: where the compile runs (a container image, zig, or the host)."""

from __future__ import annotations

import os
import platform
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Mapping, Optional, Tuple

from ..errors import BaselineError
from ..settings import Settings

__all__ = [
    "INSIDE_CONTAINER",
    "Choice",
    "build_arch",
    "choose",
    "host_arch",
    "host_glibc",
    "target_glibc",
]

INSIDE_CONTAINER = "_MLBACKEND_CONTAINER_IMAGE"
"""Set by the container baseline for the build it runs inside the image (to the image's name),
so that build logs that it is the container baseline's inner half rather than a host build.
Outside the ``MLBACKEND_`` prefix: it is not a setting."""


@dataclass(frozen=True)
class Choice:
    """The baseline a build uses, and why."""

    kind: Literal["container", "zig", "host"]
    reason: str
    engine: str = ""
    image: str = ""
    inside: bool = False
    """True for the build the container baseline runs inside ``image`` (it compiles in place,
    like ``host``)."""

    def log_line(self) -> str:
        """How the build log states the choice: one ``baseline:`` line per build, so the inner
        half of a container build does not read as a second, contradicting choice."""
        if self.inside:
            return f"inside the container image {self.image}: {self.reason}"
        return f"baseline: {self.kind} ({self.reason})"


def host_arch() -> str:
    """The wheel architecture of the calling interpreter (``x86_64``, ``i686``, ``aarch64``...)."""
    machine = platform.machine().lower()
    if struct.calcsize("P") == 4 and machine in ("x86_64", "amd64", "i386", "i586", "i686"):
        return "i686"
    if struct.calcsize("P") == 4 and machine in ("aarch64", "armv8l", "armv7l"):
        return "armv7l"
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


def build_arch(settings: Settings) -> str:
    """The architecture the build is for: the ``arch`` setting, else the host's."""
    return settings.arch or host_arch()


def host_glibc() -> Optional[Tuple[int, int]]:
    """The running glibc's version, or None on musl and other libcs."""
    try:
        text = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError, AttributeError):
        return None
    match = re.search(r"(\d+)\.(\d+)", text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def target_glibc(target: str) -> Optional[Tuple[int, int]]:
    """``manylinux_2_17`` -> (2, 17); None for ``auto`` and musllinux."""
    match = re.fullmatch(r"manylinux_(\d+)_(\d+)", target)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _ways(target: str) -> str:
    return (f"install podman or docker with the image for {target}, or `pip install ziglang` "
            "and -C baseline=zig, or build on an older system")


def _zig(settings: Settings, env: Mapping[str, str], reason: str = "baseline = zig") -> Choice:
    from . import cross, zig

    cross.check_policy(build_arch(settings), settings.target)
    found = zig.locate_zig(env)
    if found is None:
        raise BaselineError("baseline zig needs the ziglang package, which is not installed",
                            tip="pip install ziglang, or pick -C baseline=host")
    return Choice("zig", f"{reason}; {found.describe()}")


def _container(settings: Settings, arch: str, reason: str) -> Choice:
    from . import container

    found = container.choose_container(settings, arch)
    return Choice("container", reason, engine=found.engine, image=found.image)


def choose(settings: Settings, env: Optional[Mapping[str, str]] = None) -> Choice:
    """Pick the baseline for ``settings`` (``auto`` resolves to the best one available)."""
    env = os.environ if env is None else env
    arch = host_arch()
    target = settings.target
    if env.get(INSIDE_CONTAINER):
        return Choice("host", "the build runs with the image's compilers and libraries",
                      image=env[INSIDE_CONTAINER], inside=True)
    wanted_arch = build_arch(settings)
    if wanted_arch != arch:
        if settings.baseline in ("host", "container"):
            raise BaselineError(f"building for {wanted_arch} on this {arch} machine needs "
                                f"baseline zig, not {settings.baseline}",
                                tip=f"-C baseline=zig, or build on a {wanted_arch} machine")
        return _zig(settings, env, f"{wanted_arch} is not the host's {arch}: zig cross-compiles")
    if env.get("AUDITWHEEL_PLAT"):
        return Choice("host", f"inside a baseline image (AUDITWHEEL_PLAT={env['AUDITWHEEL_PLAT']})")
    if settings.baseline == "zig":
        return _zig(settings, env)
    if settings.baseline == "container":
        return _container(settings, arch, "baseline = container")
    glibc = host_glibc()
    wanted = target_glibc(target)
    if settings.baseline == "host":
        if wanted and glibc and glibc > wanted:
            return Choice("host", f"baseline = host; its glibc {glibc[0]}.{glibc[1]} is newer "
                                  f"than {target}: the audit decides whether the binary allows it")
        return Choice("host", "baseline = host")
    if target == "auto":
        return Choice("host", "no manylinux target set: the host's build is tagged as it is")
    if wanted and glibc and glibc <= wanted:
        return Choice("host", f"the host's glibc {glibc[0]}.{glibc[1]} is old enough for {target}")
    from . import container, zig

    try:
        found = container.choose_container(settings, arch)
    except BaselineError as error:
        no_container = error.message
    else:
        return Choice("container", f"{Path(found.engine).name} has the image {found.image}",
                      engine=found.engine, image=found.image)
    have = zig.locate_zig(env)
    if have is not None:
        return Choice("zig", f"{no_container}; {have.describe()}; zig targets {target}")
    return Choice("host", f"{no_container}; ziglang is not installed and no zig is cached in "
                          f"{zig.cache_root(env)} ({_ways(target)}); the host's build is "
                          "audited against the target")
