"""Coexistence hazards: what in a wheel can crash the process once another wheel's
extension is loaded next to it, even though each works alone.

Python loads extensions with ``RTLD_LOCAL``, yet three things still cross between them:
``STB_GNU_UNIQUE`` symbols (the loader binds every copy to the first one loaded), objects
loaded with ``RTLD_GLOBAL`` (their exports then interpose everyone's), and a library both
load by the same soname. C++ runtime code linked into one extension and exported is the
classic victim: another extension's ``std::`` calls or exceptions bind to the wrong copy.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Literal, Sequence, Tuple

from .elf import ElfInfo
from .pysource import PythonFacts

__all__ = ["ADVICE", "MANY_EXPORTS", "Hazard", "elf_hazards", "python_hazards",
           "runtime_symbols"]

MANY_EXPORTS = 25
"""Exports beyond the init function above which an extension is taken to carry a
statically linked library: a few helpers that lack ``static`` stay below it, a linked-in
zlib (about 90), libyaml (about 60) or OpenSSL (thousands) do not."""

# Mangled-name prefixes of libstdc++'s namespaces (std, __gnu_cxx, __cxxabiv1) and their
# type info/vtables, and the C names of the C++ ABI and libgcc's unwinder.
_RUNTIME_PREFIXES = (
    "_ZNSt", "_ZNKSt", "_ZSt", "_ZNSa", "_ZNSb", "_ZNKSb", "_ZNSs", "_ZNKSs", "_ZNSi",
    "_ZNSo", "_ZNSd", "_ZN9__gnu_cxx", "_ZNK9__gnu_cxx", "_ZN10__cxxabiv1",
    "_ZTISt", "_ZTSSt", "_ZTVSt", "_ZTTSt", "_ZTINSt", "_ZTSNSt", "_ZTVNSt", "_ZTTNSt",
    "_ZTIN9__gnu_cxx", "_ZTSN9__gnu_cxx", "_ZTVN9__gnu_cxx", "_ZTIN10__cxxabiv1",
    "_ZTSN10__cxxabiv1", "_ZTVN10__cxxabiv1", "_ZGVNSt", "_ZdlPv", "_ZdaPv", "_Znwm",
    "_Znam", "_Znwj", "_Znaj",
    "__cxa_", "__gxx_personality", "__gcc_personality", "_Unwind_", "__dynamic_cast",
)
# The part of the runtime no translation unit emits on its own (template instantiations
# of std:: are emitted, weak, into every object that uses them).
_RUNTIME_HEADS = frozenset(p[:4] for p in _RUNTIME_PREFIXES)  # every prefix is 4+ long
_ABI_PREFIXES = ("__cxa_", "__gxx_personality", "__gcc_personality", "_Unwind_",
                 "__dynamic_cast", "_ZN10__cxxabiv1", "_ZTVN10__cxxabiv1")
_RUNTIME_SONAMES = ("libstdc++.so", "libgcc_s.so", "libstdc++-", "libgcc_s-")
_LINKER_SYMBOLS = frozenset({"_init", "_fini", "_edata", "_end", "__bss_start"})

ADVICE = {
    "cxx-runtime": "another extension's std:: calls and C++ exceptions can bind to this "
                   "copy of the C++ runtime and crash on a layout or version mismatch; fix: "
                   "link libstdc++ dynamically, or add -Wl,--exclude-libs,ALL (or a version "
                   "script) to -static-libstdc++: -fvisibility=hidden does not hide archive "
                   "code",
    "gnu-unique": "the loader merges STB_GNU_UNIQUE objects across every library in the "
                  "process, so two wheels with different copies share one; fix: "
                  "-fvisibility=hidden -fvisibility-inlines-hidden, or -fno-gnu-unique",
    "vendored-runtime": "a second libstdc++/libgcc_s in the process meets C++ objects and "
                        "exceptions made by the system's copy; fix: build in the target's "
                        "baseline so the system's copy suffices, or -static-libstdc++ with "
                        "-Wl,--exclude-libs,ALL",
    "many-exports": "a statically linked library whose symbols are exported interposes "
                    "the same library loaded by another wheel (through RTLD_GLOBAL or a "
                    "shared soname); fix: -fvisibility=hidden plus -Wl,--exclude-libs,ALL, "
                    "or a version script exporting only PyInit_*",
    "rtld-global": "objects loaded with RTLD_GLOBAL export their symbols to every library "
                   "loaded later, so one wheel's copies replace another's; fix: load with "
                   "the default RTLD_LOCAL, or hide the extensions' exports",
}


@dataclass(frozen=True)
class Hazard:
    """One reason a wheel may crash next to other wheels."""

    file: str
    """The wheel member."""
    kind: Literal["cxx-runtime", "gnu-unique", "vendored-runtime", "many-exports",
                  "rtld-global"]
    detail: str
    certain: bool = False
    """True when the hazard is there whatever else gets loaded (fails strict builds)."""

    @property
    def advice(self) -> str:
        """Why it can crash, and how to fix it, in one line."""
        return ADVICE[self.kind]

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {"file": self.file, "kind": self.kind, "detail": self.detail,
                "certain": self.certain, "advice": self.advice}


def runtime_symbols(names: Iterable[str]) -> List[str]:
    """The names among ``names`` that belong to the C++ runtime (libstdc++/libgcc)."""
    # the four-character set test first: a library exports mostly names it rules out
    return [n for n in names if n[:4] in _RUNTIME_HEADS and n.startswith(_RUNTIME_PREFIXES)]


def _examples(names: Sequence[str], count: int = 4) -> str:
    """C++ ABI names first, then the shortest: ``__cxa_throw`` says more than a guard
    variable."""
    ranked = sorted(names, key=lambda n: (not n.startswith(_ABI_PREFIXES), len(n), n))
    shown = ", ".join(ranked[:count])
    return shown + (f" (+{len(names) - count} more)" if len(names) > count else "")


def _prefix(name: str) -> str:
    """``yaml_parser_load`` -> ``yaml_``: a linked-in C library shows as one prefix."""
    if name.startswith("_Z"):
        return "_Z"  # C++: grouping by namespace would need demangling
    head, sep, _ = name.lstrip("_").partition("_")
    return name[: len(name) - len(name.lstrip("_"))] + head + sep


def _is_runtime(file: str, info: ElfInfo) -> bool:
    return (info.soname or Path(file).name).startswith(_RUNTIME_SONAMES)


def _elf_hazards(file: str, info: ElfInfo, is_extension: bool, vendored: bool,
                 ) -> List[Hazard]:
    if _is_runtime(file, info):
        return [Hazard(file, "vendored-runtime",
                       f"ships its own {info.soname or Path(file).name}"
                       + (" (vendored)" if vendored else ""))]
    out: List[Hazard] = []
    runtime = runtime_symbols(info.exported)
    # a NEEDED libstdc++ (a vendored, hash-renamed copy too) is the runtime linked
    # dynamically: only the ABI part defined here matters
    dynamic = any(n.startswith("libstdc++") for n in info.needed)
    shown = runtime if not dynamic else [n for n in runtime if n.startswith(_ABI_PREFIXES)]
    # without the ABI part (no __cxa_*, personality, unwinder, __cxxabiv1) the std:: names
    # are template instantiations the file's own code emitted, not a copy of the runtime
    static = not dynamic and any(n.startswith(_ABI_PREFIXES) for n in shown)
    if shown:
        where = ("linked in statically" if static else "defined here" if dynamic
                 else "(std:: template instantiations, no runtime of its own)")
        out.append(Hazard(file, "cxx-runtime",
                          f"exports {len(shown)} C++ runtime symbols {where}: "
                          f"{_examples(shown)}", certain=static))
    if info.unique:
        out.append(Hazard(file, "gnu-unique", f"{len(info.unique)} STB_GNU_UNIQUE "
                                              f"symbols: {_examples(info.unique)}"))
    if is_extension:
        # with the runtime linked in, its internals (_Z*, __*) are that hazard already
        internal = ("_Z", "__") if shown and not dynamic else _RUNTIME_PREFIXES
        own = [n for n in info.exported if n not in info.init_functions
               and n not in _LINKER_SYMBOLS and not n.startswith(internal)]
        if len(own) > MANY_EXPORTS:
            groups = Counter(_prefix(n) for n in own)
            common = ", ".join(f"{p}* ({c})" for p, c in groups.most_common(3))
            out.append(Hazard(file, "many-exports",
                              f"exports {len(own)} symbols besides its init function "
                              f"(most common prefixes: {common}): {_examples(own)}"))
    return out


def elf_hazards(elves: Iterable[Tuple[str, ElfInfo, bool]],
                vendored: Sequence[str] = ()) -> Tuple[Hazard, ...]:
    """The hazards of the ELF files given as (member, facts, is extension)."""
    out: List[Hazard] = []
    for file, info, is_extension in elves:
        out += _elf_hazards(file, info, is_extension, file in vendored)
    return tuple(out)


def python_hazards(facts: Iterable[PythonFacts]) -> Tuple[Hazard, ...]:
    """``sys.setdlopenflags``/``RTLD_GLOBAL`` in the wheel's Python files."""
    out: List[Hazard] = []
    for fact in facts:
        if fact.global_loads:
            uses = ", ".join(f"{what} (line {line})" for line, what in fact.global_loads[:4])
            more = len(fact.global_loads) - 4
            out.append(Hazard(fact.file, "rtld-global",
                              f"loads libraries globally: {uses}"
                              + (f" (+{more} more)" if more > 0 else "")))
    return tuple(out)
