"""The build behind the ``build_wheel`` hook: settings, baseline, setuptools, then the finish step
(:mod:`mlbackend.finish`)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterator, Mapping, Optional

from ._log import emit
from .record import BuildRecord, write_record
from .settings import load_settings, setuptools_config
from .tags import wheel_platforms

__all__ = ["build_wheel", "with_plat_name"]


@contextlib.contextmanager
def _environ(overlay: Mapping[str, str]) -> Iterator[None]:
    """Set ``overlay`` in os.environ for the duration (setuptools reads CC etc. from there)."""
    saved = {k: os.environ.get(k) for k in overlay}
    os.environ.update(overlay)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def path_free_flags(source: Path, env: Mapping[str, str]) -> Dict[str, str]:
    """CPPFLAGS that map the source folder to ``.`` in what the compiler records (debug
    information, ``__FILE__``), so that the same source built in another folder gives the
    same bytes; the user's own CPPFLAGS are kept and come last.

    CPPFLAGS, not CFLAGS: setuptools appends CPPFLAGS to the C and C++ compile and link
    commands, while a CFLAGS or CXXFLAGS in the environment replaces the interpreter's own
    (``-O3 -DNDEBUG -g -fwrapv -Wall``) in recent setuptools: the extension would be built
    unoptimized, with its asserts on."""
    flag = f"-ffile-prefix-map={source}=."
    return {"CPPFLAGS": f"{flag} {env['CPPFLAGS']}" if env.get("CPPFLAGS") else flag}


def with_plat_name(config: Optional[Dict[str, Any]], plat_name: str) -> Dict[str, Any]:
    """setuptools config-settings that also pass ``--plat-name`` to bdist_wheel."""
    import shlex

    out = dict(config or {})
    given = out.get("--build-option", [])
    options = shlex.split(given) if isinstance(given, str) else list(given)
    out["--build-option"] = [*options, f"--plat-name={plat_name}"]
    return out


def build_wheel(wheel_directory: str, config_settings: Optional[Mapping[str, Any]],
                metadata_directory: Optional[str]) -> str:
    """PEP 517 build_wheel: build with setuptools in the chosen baseline, then finish."""
    from setuptools import build_meta

    from .baseline import build_arch, choose, host_arch, target_glibc
    from .finish import finish

    source = Path.cwd()
    settings = load_settings(source, config_settings)
    theirs = setuptools_config(config_settings)
    choice = choose(settings)
    emit("info", choice.log_line())
    out_dir = Path(wheel_directory)
    out_dir.mkdir(parents=True, exist_ok=True)
    if choice.kind == "container":
        from .baseline import container

        name, inner = container.build_in_container_recorded(
            source, out_dir, settings, theirs or {}, container.host_python_tag())
        write_record(BuildRecord(
            wheel=name, baseline=choice.kind, baseline_reason=choice.reason,
            tag=inner.tag if inner else "", tags=wheel_platforms(name),
            reason=inner.reason if inner else ""))
        return name
    with tempfile.TemporaryDirectory(prefix="mlbackend-build-") as tmp:
        overlay: Dict[str, str] = {}
        if choice.kind == "zig":
            from .baseline import zig

            arch = build_arch(settings)
            glibc = target_glibc(settings.target) if settings.target != "auto" \
                else zig.default_glibc(arch)
            overlay = zig.toolchain_env(arch, glibc, Path(tmp) / "zig", os.environ,
                                        host=host_arch())
            if arch != host_arch():
                theirs = with_plat_name(theirs, f"linux_{arch}")
        overlay.update(path_free_flags(source, {**os.environ, **overlay}))
        built = Path(tmp) / "dist"
        built.mkdir()
        with _environ(overlay):
            name = build_meta.build_wheel(str(built), theirs, metadata_directory)
        if choice.kind == "zig":
            for note in zig.dropped_flags(Path(tmp) / "zig"):
                emit("note", f"zig: {note}")
        name, report = finish(built / name, out_dir, settings, "build")
    write_record(BuildRecord(wheel=name, baseline=choice.kind, baseline_reason=choice.reason,
                             tag=report.tag, tags=wheel_platforms(name), reason=report.reason))
    return name
