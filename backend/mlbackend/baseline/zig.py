"""zig as a glibc-versioned cross toolchain for setuptools builds.

:func:`toolchain_env` writes one-word wrapper scripts (CC, CXX, LDSHARED, LDCXXSHARED, AR) that run
``zig cc -target <arch>-linux-gnu.<X.Y>`` through ``_zig_wrapper.py`` (run as a script, standard
library only), which drops or rewrites the flags zig rejects.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

from .._proc import run, try_run
from ..errors import BaselineError
from ..policy import version_key

__all__ = [
    "REQUIREMENT",
    "ZigFound",
    "ZigToolchain",
    "cache_root",
    "cached_zig",
    "default_glibc",
    "dropped_flags",
    "find_toolchain",
    "locate_zig",
    "requirements",
    "toolchain_env",
    "zig_available",
    "zig_target",
]

REQUIREMENT = "ziglang>=0.13"
"""What ``get_requires_for_build_wheel`` asks for when the baseline is zig."""

# manylinux architecture -> (zig arch, glibc abi, musl abi, oldest glibc for that arch)
_ARCHES: Dict[str, Tuple[str, str, str, Tuple[int, int]]] = {
    "x86_64": ("x86_64", "gnu", "musl", (2, 5)),
    "i686": ("x86", "gnu", "musl", (2, 5)),
    "aarch64": ("aarch64", "gnu", "musl", (2, 17)),
    "ppc64le": ("powerpc64le", "gnu", "musl", (2, 17)),
    "s390x": ("s390x", "gnu", "musl", (2, 17)),
    "armv7l": ("arm", "gnueabihf", "musleabihf", (2, 17)),
    "riscv64": ("riscv64", "gnu", "musl", (2, 27)),
    "loongarch64": ("loongarch64", "gnu", "musl", (2, 36)),
}
_NOTES_FILE = "dropped-flags.txt"  # written by _zig_wrapper.py
_WRAPPER = Path(__file__).with_name("_zig_wrapper.py")
_MODES = ("cc", "c++", "ldshared", "ldcxxshared", "ar")
_ENV_NAMES = {"cc": "CC", "c++": "CXX", "ldshared": "LDSHARED", "ldcxxshared": "LDCXXSHARED",
              "ar": "AR"}


@dataclass(frozen=True)
class ZigToolchain:
    """A located zig and the target it compiles for."""

    target: str
    """zig's target triple, e.g. ``x86_64-linux-gnu.2.17`` or ``x86_64-linux-musl``."""
    zig: Path
    """The zig executable (a stable copy of the one the ziglang package ships)."""
    version: str
    """The ziglang distribution version, e.g. ``0.13.0``."""
    lib_dir: Path
    """A stable copy of zig's ``lib/`` folder (zig's cache is keyed on its path)."""
    cache_dir: Path
    """zig's global cache directory."""


@dataclass(frozen=True)
class ZigFound:
    """The zig a build would use, and where it comes from."""

    origin: str
    """``ziglang`` (the package is installed here) or ``cache`` (kept by an earlier build)."""
    version: str
    """The zig version, e.g. ``0.13.0``."""
    folder: Path
    """The ziglang package folder, or the cached copy's folder."""

    def describe(self) -> str:
        """Where this zig comes from, for the build log."""
        if self.origin == "ziglang":
            return f"ziglang {self.version} is installed"
        return (f"zig {self.version} cached in {self.folder} by an earlier build "
                "(ziglang is not installed)")


def _error(message: str, tip: str) -> Exception:
    return BaselineError(message, tip=tip)


def _ziglang_dir() -> Optional[Path]:
    spec = importlib.util.find_spec("ziglang")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def locate_zig(base_env: Optional[Mapping[str, str]] = None) -> Optional[ZigFound]:
    """The zig a build would use: the installed ziglang first, else the newest zig an earlier
    build kept in the user cache; None when there is neither."""
    folder = _ziglang_dir()
    if folder is not None and (folder / "zig").is_file():
        return ZigFound("ziglang", _ziglang_version(folder), folder)
    cached = cached_zig(os.environ if base_env is None else base_env)
    if cached is not None:
        return ZigFound("cache", cached.name[len("zig-"):], cached)
    return None


def zig_available(base_env: Optional[Mapping[str, str]] = None) -> bool:
    """Whether zig can be used: ziglang is installed here, or a previous build cached a zig."""
    return locate_zig(base_env) is not None


def zig_target(arch: str, glibc: Optional[Tuple[int, int]]) -> str:
    """zig's target for a manylinux arch and glibc (None: musl), e.g. ``x86_64-linux-gnu.2.17``."""
    if arch not in _ARCHES:
        raise _error(f"zig cannot target the architecture {arch!r}",
                            tip=f"use one of {', '.join(_ARCHES)}, or -C baseline=container")
    zig_arch, gnu_abi, musl_abi, oldest = _ARCHES[arch]
    if glibc is None:
        return f"{zig_arch}-linux-{musl_abi}"
    if glibc[0] != 2 or glibc < oldest:
        raise _error(f"zig cannot target glibc {glibc[0]}.{glibc[1]} on {arch} "
                            f"(the oldest is {oldest[0]}.{oldest[1]})",
                            tip="pick a newer manylinux target, or -C baseline=container")
    return f"{zig_arch}-linux-{gnu_abi}.{glibc[0]}.{glibc[1]}"


def default_glibc(arch: str) -> Tuple[int, int]:
    """The glibc a zig build links against when no target is set: 2.17, or the oldest the
    architecture has when that is newer (riscv64: 2.27)."""
    return max((2, 17), _ARCHES[arch][3]) if arch in _ARCHES else (2, 17)


def _known_glibcs(zig: Path) -> List[Tuple[int, int]]:
    """The glibc versions this zig can link against (from ``zig targets``; JSON or ZON)."""
    text = run([zig, "targets"], what="listing zig's targets", error=BaselineError).out
    start = re.search(r"\.?\"?glibc\"?\s*[:=]", text)
    if start is None:
        return []
    section = text[start.end():]
    end = re.search(r"[\]}]", section)
    section = section[:end.start()] if end else section
    return [(int(a), int(b)) for a, b in re.findall(r"\"(\d+)\.(\d+)(?:\.\d+)?\"", section)]


def _ziglang_version(folder: Path) -> str:
    from importlib import metadata

    try:
        return metadata.version("ziglang")
    except metadata.PackageNotFoundError:
        out = try_run([folder / "zig", "version"])
        return (out.out.strip() if out else "") or "unknown"


def _cache_home(base_env: Mapping[str, str]) -> Path:
    xdg = base_env.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg)
    home = base_env.get("HOME") or str(Path.home())
    return Path(home) / ".cache"


def _link_or_copy(src: str, dst: str) -> object:
    # Hard links make the copy instant and free when the cache shares a file system with the
    # build environment; zig only reads these files.
    try:
        os.link(src, dst)
    except OSError:
        return shutil.copy2(src, dst)
    return dst


def _stable_toolchain(source: Path, version: str, cache_home: Path) -> Path:
    """One copy of zig (``lib/`` and the executable) per zig version, written atomically."""
    home = cache_home / "mlbackend" / f"zig-{version}"
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "lib" / "std").is_dir():
        scratch = Path(tempfile.mkdtemp(prefix="lib.tmp-", dir=home))
        try:
            shutil.copytree(source / "lib", scratch / "lib", copy_function=_link_or_copy,
                            symlinks=True)
            try:
                (scratch / "lib").rename(home / "lib")
            except OSError:
                if not (home / "lib" / "std").is_dir():  # lost a race: the winner's is fine
                    raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    if not (home / "zig").is_file():
        scratch_exe = home / f"zig.tmp-{os.getpid()}"
        _link_or_copy(str(source / "zig"), str(scratch_exe))
        scratch_exe.replace(home / "zig")
    return home


def cache_root(base_env: Mapping[str, str]) -> Path:
    """The folder where builds keep their copies of zig (``$XDG_CACHE_HOME/mlbackend``)."""
    return _cache_home(base_env) / "mlbackend"


def cached_zig(base_env: Mapping[str, str]) -> Optional[Path]:
    """The newest zig a previous build kept in the user cache (its folder), if any."""
    root = cache_root(base_env)
    if not root.is_dir():
        return None
    homes = [h for h in root.glob("zig-[0-9]*")
             if (h / "zig").is_file() and (h / "lib" / "std").is_dir()]
    return max(homes, key=lambda h: version_key(h.name)[:3]) if homes else None


def requirements(base_env: Mapping[str, str]) -> List[str]:
    """Build requirements for the zig baseline: none when a cached zig can be used.

    Installing ziglang (a 185 MB binary and 230 MB of sources) into every isolated build
    environment costs more than a whole gcc build, and the user cache already holds a copy.
    """
    return [] if _ziglang_dir() is not None or cached_zig(base_env) else [REQUIREMENT]


def find_toolchain(arch: str, glibc: Optional[Tuple[int, int]],
                   base_env: Mapping[str, str]) -> ZigToolchain:
    """Locate zig (ziglang, else the user cache), check the target and keep a stable copy."""
    target = zig_target(arch, glibc)
    cache_home = _cache_home(base_env)
    found = locate_zig(base_env)
    if found is None:
        raise _error("baseline zig needs the ziglang package, which is not installed",
                     tip=f"pip install '{REQUIREMENT}', or pick -C baseline=host")
    version = found.version
    home = (_stable_toolchain(found.folder, version, cache_home) if found.origin == "ziglang"
            else found.folder)
    zig = home / "zig"
    if glibc is not None:
        known = _known_glibcs(zig)
        if known and glibc not in known:
            newest = max(known)
            raise _error(f"this zig cannot target glibc {glibc[0]}.{glibc[1]} "
                                f"(it knows {min(known)[0]}.{min(known)[1]} to "
                                f"{newest[0]}.{newest[1]})",
                                tip="upgrade ziglang, or pick another manylinux target")
    lib_dir = Path(base_env["ZIG_LIB_DIR"]) if base_env.get("ZIG_LIB_DIR") else home / "lib"
    cache_dir = Path(base_env.get("ZIG_GLOBAL_CACHE_DIR") or cache_home / "mlbackend" / "zig-cache")
    return ZigToolchain(target, zig, version, lib_dir, cache_dir)


def _python_include_shim(workdir: Path) -> Optional[Path]:
    """A folder that makes Debian's multiarch ``pyconfig.h`` include resolvable, if needed.

    Debian's ``/usr/include/python3.X/pyconfig.h`` includes ``<x86_64-linux-gnu/python3.X/
    pyconfig.h>``, which a zig cross compile cannot see; exposing all of ``/usr/include``
    would leak the host's newer glibc headers, so only that one folder is linked in.
    """
    pyconfig = Path(sysconfig.get_config_h_filename())
    try:
        text = pyconfig.read_text(errors="replace")
    except OSError:
        return None
    multiarch = sysconfig.get_config_var("MULTIARCH") or ""
    match = re.search(rf"#\s*include\s*<({re.escape(multiarch)}/[^>/]+)/pyconfig\.h>", text) \
        if multiarch else None
    if match is None:
        return None
    for root in (Path("/usr/include"), Path(sysconfig.get_config_var("prefix") or "/usr") /
                 "include"):
        real = root / match.group(1)
        if (real / "pyconfig.h").is_file():
            shim = workdir / "include"
            link = shim / match.group(1)
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                link.symlink_to(real, target_is_directory=True)
            return shim
    return None


def _wrapper(workdir: Path, mode: str, python: str, config: Path) -> Path:
    command = [python, "-I", "-S", str(_WRAPPER.resolve()), mode, str(config), "--"]
    path = workdir / "bin" / mode.replace("+", "x")
    path.write_text("#!/bin/sh\nexec " + " ".join(shlex.quote(c) for c in command)
                    + ' "$@"\n')
    path.chmod(0o755)
    return path


def toolchain_env(arch: str, glibc: Optional[Tuple[int, int]], workdir: Path,
                  base_env: Mapping[str, str], host: str = "") -> Dict[str, str]:
    """The environment overlay that makes setuptools compile and link with zig for the target.

    Wrapper scripts go to ``workdir/bin``; flags zig rejects are dropped or rewritten and
    listed by :func:`dropped_flags` afterwards. ``base_env`` supplies XDG_CACHE_HOME/HOME and
    any ZIG_LIB_DIR/ZIG_GLOBAL_CACHE_DIR the caller already chose. For another architecture
    or musl (``host`` names the build machine's arch, default ``arch``) the overlay also sets
    the extension suffix the target's CPython loads (``SETUPTOOLS_EXT_SUFFIX``).
    """
    from . import cross

    zig = find_toolchain(arch, glibc, base_env)
    workdir = Path(workdir).resolve()
    (workdir / "bin").mkdir(parents=True, exist_ok=True)
    target = cross.cross_target(arch, "musl" if glibc is None else "glibc", host or arch)
    include_map: Dict[str, str] = {}
    extra: List[str] = []
    if target is not None and target.note:
        from .._log import emit

        emit("note", f"zig: {target.note}")
    if target is not None and target.pyconfig is not None:
        include_map = cross.include_shim(workdir, target.pyconfig)
    else:
        shim = _python_include_shim(workdir)
        extra = ["-idirafter", str(shim)] if shim is not None else []
    replace_needed: Dict[str, str] = {}
    patchelf = ""
    if glibc is None:
        from ..patcher import find_patchelf
        from ..policy import musl_libc_soname

        # zig records musl's libc as ``libc.so``; musl systems know it by another name.
        replace_needed = {"libc.so": musl_libc_soname(arch)}
        patchelf = str(find_patchelf())
    config = {"zig": str(zig.zig), "target": zig.target, "workdir": str(workdir),
              "lib_dir": str(zig.lib_dir), "cache_dir": str(zig.cache_dir), "extra": extra,
              "include_map": include_map, "replace_needed": replace_needed,
              "patchelf": patchelf}
    config_path = workdir / "wrapper.json"
    config_path.write_text(json.dumps(config, indent=1, sort_keys=True))
    env = {_ENV_NAMES[mode]: str(_wrapper(workdir, mode, sys.executable, config_path))
           for mode in _MODES}
    env["ZIG_LIB_DIR"] = str(zig.lib_dir)
    env["ZIG_GLOBAL_CACHE_DIR"] = str(zig.cache_dir)
    if target is not None:
        env["SETUPTOOLS_EXT_SUFFIX"] = target.ext_suffix
        env.update(_separate_build_base(workdir, target.triplet, base_env))
    return env


def _separate_build_base(workdir: Path, triplet: str,
                         base_env: Mapping[str, str]) -> Dict[str, str]:
    """A setuptools config (``DIST_EXTRA_CONFIG``) that keeps the target's objects apart.

    setuptools names its build folder after the host's platform, so without this a build
    for another target would reuse (and package) the previous target's extensions."""
    if base_env.get("DIST_EXTRA_CONFIG"):
        from .._log import emit

        emit("warning", "DIST_EXTRA_CONFIG is set: the build folder is shared with other "
                        "targets; remove build/ between builds for different targets")
        return {}
    config = workdir / "setuptools.cfg"
    config.write_text(f"[build]\nbuild_base = build/{triplet}\n")
    return {"DIST_EXTRA_CONFIG": str(config)}


def dropped_flags(workdir: Path) -> Tuple[str, ...]:
    """The notes the wrappers wrote about flags they dropped or rewrote, one per flag."""
    try:
        lines = (Path(workdir) / _NOTES_FILE).read_text().splitlines()
    except OSError:
        return ()
    return tuple(dict.fromkeys(line for line in lines if line))
