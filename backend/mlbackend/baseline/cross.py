"""What a build for another architecture or libc changes: triplet, extension suffix, platform
name, pyconfig.h, and the combinations that cannot work.

setuptools is steered through its own knobs only: ``SETUPTOOLS_EXT_SUFFIX`` for the extension
file names and bdist_wheel's ``--plat-name`` for the wheel's platform tag.
``_PYTHON_HOST_PLATFORM`` is not used: distutils also reads it to decide whether to link
libpython, which a Linux extension must never do.
"""

from __future__ import annotations

import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

from ..errors import BaselineError

__all__ = [
    "CrossTarget",
    "check_policy",
    "cross_target",
    "ext_suffix",
    "include_shim",
    "platform_triplet",
]

# arch -> (PLATFORM_TRIPLET cpu, gnu abi, musl abi, Debian arch, pointer bytes, big-endian)
_ARCH_FACTS: Dict[str, Tuple[str, str, str, str, int, bool]] = {
    "x86_64": ("x86_64", "gnu", "musl", "amd64", 8, False),
    "i686": ("i386", "gnu", "musl", "i386", 4, False),
    "aarch64": ("aarch64", "gnu", "musl", "arm64", 8, False),
    "ppc64le": ("powerpc64le", "gnu", "musl", "ppc64el", 8, False),
    "s390x": ("s390x", "gnu", "musl", "s390x", 8, True),
    "armv7l": ("arm", "gnueabihf", "musleabihf", "armhf", 4, False),
    "riscv64": ("riscv64", "gnu", "musl", "riscv64", 8, False),
    "loongarch64": ("loongarch64", "gnu", "musl", "loong64", 8, False),
}


@dataclass(frozen=True)
class CrossTarget:
    """The facts a zig build for ``arch`` and ``libc`` needs beyond the zig target."""

    arch: str
    """The wheel architecture, e.g. ``aarch64``."""
    libc: str
    """``glibc`` or ``musl``."""
    triplet: str
    """CPython's platform triplet for the target, e.g. ``aarch64-linux-gnu``."""
    ext_suffix: str
    """The extension file suffix the target's CPython loads, e.g.
    ``.cpython-311-aarch64-linux-musl.so``."""
    plat_name: str
    """bdist_wheel's ``--plat-name``, e.g. ``linux_aarch64``."""
    pyconfig: Optional[Path]
    """The target's ``pyconfig.h`` to compile with; None when the host's is the right one."""
    note: str = ""
    """Something the build log should say (e.g. which pyconfig.h stands in)."""


def platform_triplet(arch: str, libc: str) -> str:
    """CPython's PLATFORM_TRIPLET, e.g. ``aarch64-linux-gnu``, ``arm-linux-musleabihf``."""
    cpu, gnu, musl, *_ = _ARCH_FACTS[arch]
    return f"{cpu}-linux-{musl if libc == 'musl' else gnu}"


def ext_suffix(arch: str, libc: str) -> str:
    """The running CPython's extension suffix, made for ``arch`` and ``libc``."""
    tag = f"{sys.implementation.cache_tag}{getattr(sys, 'abiflags', '')}"
    return f".{tag}-{platform_triplet(arch, libc)}.so"


def _data_model(arch: str) -> Tuple[int, bool]:
    facts = _ARCH_FACTS[arch]
    return facts[4], facts[5]


def _host_data_model() -> Tuple[int, bool]:
    return (8 if sys.maxsize > 2**32 else 4), sys.byteorder == "big"


def _target_pyconfig(arch: str, libc: str, host: str) -> Tuple[Optional[Path], str]:
    """The pyconfig.h to use, and a note; raises when the host's cannot stand in."""
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    if arch == host and libc == "glibc":
        return None, ""
    # Debian's multiarch libpython3.X-dev:<arch> holds the real one for glibc targets (and
    # the closest one for musl on another architecture: the same sizes and byte order).
    debian = Path("/usr/include") / platform_triplet(arch, "glibc") / version / "pyconfig.h"
    if arch != host and debian.is_file():
        return debian, f"compiling with {debian}"
    if arch == host:
        return None, f"the host's pyconfig.h stands in for a {libc} CPython's: same architecture"
    if _data_model(arch) == _host_data_model():
        # Same pointer size and byte order: the sizes and layout pyconfig.h fixes for the
        # public headers agree; only facts about the interpreter's own build differ.
        return None, (f"no {arch} pyconfig.h found ({debian}); the host's stands in: "
                      "same pointer size and byte order")
    bits, big = _data_model(arch)
    deb_arch = _ARCH_FACTS[arch][3]
    raise BaselineError(
        f"building for {arch} needs its pyconfig.h ({bits * 8}-bit"
        f"{', big-endian' if big else ''}), which differs from the host's; {debian} is missing",
        tip=f"apt-get install lib{version}-dev:{deb_arch} (after dpkg --add-architecture "
            f"{deb_arch}), or build on a {arch} machine")


def cross_target(arch: str, libc: str, host: str) -> Optional[CrossTarget]:
    """The cross facts for ``arch``/``libc`` built on ``host``; None for a native build."""
    if arch not in _ARCH_FACTS:
        raise BaselineError(f"unknown architecture {arch!r}",
                            tip=f"use one of {', '.join(_ARCH_FACTS)}")
    if arch == host and libc == "glibc":
        return None
    if sys.implementation.name != "cpython":
        raise BaselineError(f"building for {arch} ({libc}) from {sys.implementation.name} is not "
                            "supported: only CPython's extension suffix is known",
                            tip="build with CPython, or on the target machine")
    pyconfig, note = _target_pyconfig(arch, libc, host)
    return CrossTarget(arch=arch, libc=libc, triplet=platform_triplet(arch, libc),
                       ext_suffix=ext_suffix(arch, libc),
                       plat_name=f"linux_{arch}", pyconfig=pyconfig, note=note)


def check_policy(arch: str, target: str) -> None:
    """Raise when the policy data has no ``target`` for ``arch`` (e.g. manylinux_2_17 riscv64),
    or when zig's musl cannot honour it."""
    if target == "auto":
        return
    from ..policy import load_policies

    libc = "musl" if target.startswith("musllinux") else "glibc"
    policies = load_policies(libc, arch, target)
    if policies.find(target) is None:
        oldest = next((p.base for p in policies if not p.is_linux), "")
        raise BaselineError(f"{target} has no {arch} policy",
                            tip=f"the oldest for {arch} is {oldest}" if oldest
                            else f"no {libc} policy knows {arch}")
    if target == "musllinux_1_1" and _data_model(arch)[0] == 4:
        raise BaselineError(f"zig links musl 1.2, whose 64-bit time_t ABI musllinux_1_1 on "
                            f"{arch} lacks", tip="target musllinux_1_2")


def include_shim(workdir: Path, pyconfig: Path) -> Dict[str, str]:
    """A copy of the host's Python include folder (as links) whose pyconfig.h is
    ``pyconfig``; returns {host include folder: shim folder} for the compiler wrapper.

    ``Python.h`` includes ``"pyconfig.h"`` from its own folder before any ``-I``, so the
    whole folder has to be replaced, not just shadowed.
    """
    out: Dict[str, str] = {}
    paths = sysconfig.get_paths()
    for key in ("include", "platinclude"):
        host = Path(paths[key])
        if str(host) in out or not host.is_dir():
            continue
        shim = workdir / f"{key}-{pyconfig.parent.parent.name}" / host.name
        shim.mkdir(parents=True, exist_ok=True)
        for entry in host.iterdir():
            link = shim / entry.name
            if entry.name != "pyconfig.h" and not link.exists():
                link.symlink_to(entry)
        if not (shim / "pyconfig.h").exists():
            (shim / "pyconfig.h").symlink_to(pyconfig)
        out[str(host)] = str(shim)
    return out
