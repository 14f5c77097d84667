"""Facts from a wheel's Python files that matter to the loader: libraries they load by name
(``ctypes.CDLL``, cffi's ``dlopen``) and calls that make the process load globally
(``sys.setdlopenflags``, ``RTLD_GLOBAL``). Read with :mod:`ast`; nothing here decides."""

from __future__ import annotations

import ast
import bisect
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

__all__ = ["LOADER_WORDS", "PythonFacts", "may_load", "python_facts", "read_python_sources",
           "scan_source"]

# Callables whose first argument names a shared library to load.
_LOADERS = frozenset({"CDLL", "PyDLL", "LoadLibrary", "dlopen"})
_GLOBAL_NAMES = frozenset({"setdlopenflags", "RTLD_GLOBAL"})
LOADER_WORDS = (*sorted(_GLOBAL_NAMES), *sorted(_LOADERS))
"""Every name a loader fact is made of; the lines that hold one are the ones walked."""
# what a fact needs in the text: a loader called by name, or a global-loading name
_USE = re.compile(rf"(?:{'|'.join(sorted(_LOADERS))})\s*\(|{'|'.join(sorted(_GLOBAL_NAMES))}")
_NEWLINE = re.compile(r"\r\n|\r|\n")  # the line ends the parser counts


@dataclass(frozen=True)
class PythonFacts:
    """What one Python file does that the loader sees."""

    file: str
    loads: Tuple[Tuple[int, str, str], ...] = ()
    """(line, how, library) per string literal passed to a loader, e.g.
    ``(12, "ctypes.CDLL", "libfoo.so.1")``."""
    global_loads: Tuple[Tuple[int, str], ...] = ()
    """(line, what) per use of ``sys.setdlopenflags`` or ``RTLD_GLOBAL``."""


def _dotted(node: ast.AST) -> Optional[str]:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else node.attr
    return None


def _literal(node: ast.AST) -> Optional[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def may_load(text: str) -> bool:
    """False when ``text`` cannot hold a loader fact: it calls no loader by name and names
    neither setdlopenflags nor RTLD_GLOBAL (such a file is not parsed)."""
    return _USE.search(text) is not None


def _lines_with_words(text: str) -> List[int]:
    """The numbers of the lines (as :mod:`ast` counts them) that hold a loader word."""
    return [n for n, line in enumerate(_NEWLINE.split(text), 1)
            if any(word in line for word in LOADER_WORDS)]


def _near(tree: ast.AST, lines: List[int]) -> Iterator[ast.AST]:
    """The nodes of ``tree`` whose lines include one of ``lines``, and their parents: a call
    that loads a library names the loader (or RTLD_GLOBAL) within its own lines, so the
    other subtrees need not be walked (most of a big module)."""
    todo: List[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            first: Optional[int] = getattr(child, "lineno", None)
            if first is None:
                todo.append(child)
                continue
            last: int = getattr(child, "end_lineno", None) or first
            at = bisect.bisect_left(lines, first)
            if at < len(lines) and lines[at] <= last:
                todo.append(child)


def scan_source(file: str, text: str) -> PythonFacts:
    """The loader facts of the Python source ``text`` of wheel member ``file``.

    A file that does not parse (Python 2 code, templates) is searched as text for the
    global-loading names, so a ``RTLD_GLOBAL`` is never missed.
    """
    try:
        tree = ast.parse(text, filename=file)
    except (SyntaxError, ValueError):
        hits = [(n, w) for n, line in enumerate(text.splitlines(), 1)
                for w in sorted(_GLOBAL_NAMES) if w in line]
        return PythonFacts(file, global_loads=tuple(hits))
    loads: List[Tuple[int, str, str]] = []
    global_loads: List[Tuple[int, str]] = []
    for node in _near(tree, _lines_with_words(text)):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func) or ""
        if name.rsplit(".", 1)[-1] in _LOADERS and node.args:
            library = _literal(node.args[0])
            if library:
                loads.append((node.lineno, name, library))
        if name.rsplit(".", 1)[-1] == "setdlopenflags":
            global_loads.append((node.lineno, name))
            continue
        # RTLD_GLOBAL handed to a call (a loader's mode); defining the constant is harmless
        for arg in [*node.args, *(k.value for k in node.keywords)]:
            if any((_dotted(n) or "").rsplit(".", 1)[-1] == "RTLD_GLOBAL"
                   for n in ast.walk(arg) if isinstance(n, (ast.Name, ast.Attribute))):
                global_loads.append((node.lineno, f"{name}(... RTLD_GLOBAL ...)"))
                break
    return PythonFacts(file, tuple(sorted(set(loads))),
                       tuple(sorted(set(global_loads))))


def read_python_sources(wheel: Path) -> Dict[str, str]:
    """The ``.py`` members of ``wheel`` that mention a loader name, by member path."""
    found: Dict[str, str] = {}
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            if not info.filename.endswith(".py") or ".dist-info/" in info.filename:
                continue
            text = zf.read(info).decode("utf-8", errors="replace")
            if may_load(text):
                found[info.filename] = text
    return found


def python_facts(wheel: Path) -> Tuple[PythonFacts, ...]:
    """The loader facts of every Python file of ``wheel`` that has any."""
    facts = (scan_source(f, t) for f, t in sorted(read_python_sources(wheel).items()))
    return tuple(f for f in facts if f.loads or f.global_loads)
