"""Check every member of a wheel in one pass and keep what the audit reads from it: the facts
of its ELF files and the loader facts of its Python files (the result is a
:class:`WheelScan`).

The members are checked (inflated, CRC, size and RECORD hash, by the reader) by a few
threads at once: zlib and hashlib release the GIL on large buffers, so the work spreads over
the machine's cores. The largest members are started first, so that no thread is left alone
with the biggest library at the end; results are taken in archive order, so the error raised
is the first member's in the archive, as a one-thread loop would raise it; nothing is
written.

An ELF member is decoded from memory; one larger than :data:`SPILL` is written to an
unlinked temporary file and decoded from a read-only mmap of it, of which only the pages the
decoder touches (headers, dynamic tables, notes) are read back: memory stays bounded by
the threads times :data:`SPILL` whatever the size of the wheel's largest library.
"""

from __future__ import annotations

import mmap
import os
import re
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from .elf import ELF_MAGIC, ElfInfo, parse_elf
from .errors import AuditError, WheelError
from .pysource import PythonFacts, may_load, scan_source
from .wheel_reader import Member, WheelReader

__all__ = ["SPILL", "WheelScan", "is_elf_head", "scan_wheel"]

SPILL = 24 << 20
"""ELF members larger than this are decoded from a temporary file, not from memory."""

_BATCH = 1 << 20  # small members are checked in batches of about this many stored bytes
_SHARED_LIBRARY = re.compile(r"\.so(\.\d+)*$")
# every loader word holds one of these: four searches of each file, six of the few that hold one
_NEEDLES = (b"dlopen", b"DLL", b"LoadLibrary", b"RTLD_GLOBAL")

_Found = Union[ElfInfo, PythonFacts, None]


@dataclass(frozen=True)
class WheelScan:
    """What one checked pass over a wheel found."""

    elves: Mapping[str, ElfInfo]
    """ELF member -> its facts, in archive order."""
    python: Tuple[PythonFacts, ...]
    """The loader facts of every Python file that has any, by member path."""


def _workers() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 4))


def _batches(members: Sequence[Member]) -> Iterator[List[Member]]:
    """The file members in archive order, in units of work: a member of at least
    :data:`_BATCH` stored bytes alone, smaller ones together up to about that much."""
    batch: List[Member] = []
    size = 0
    for member in members:
        if member.is_dir:
            continue
        if member.compressed_size >= _BATCH:
            if batch:
                yield batch
                batch, size = [], 0
            yield [member]
            continue
        batch.append(member)
        size += member.compressed_size
        if size >= _BATCH:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _elf(reader: WheelReader, member: Member, data: Union[bytes, mmap.mmap]) -> ElfInfo:
    try:
        return parse_elf(data, member.name)
    except AuditError as exc:
        raise AuditError(f"{reader.name}: {exc.message}", tip=exc.tip) from None


def _large(reader: WheelReader, member: Member) -> _Found:
    """Check a member larger than :data:`SPILL` in chunks; an ELF file is decoded from an
    unlinked temporary file it is written to."""
    chunks = reader.chunks(member)
    head = b""
    for piece in chunks:
        head += piece
        if len(head) >= len(ELF_MAGIC):
            break
    if not is_elf_head(reader.name, member.name, head):
        for _ in chunks:  # checked to the end, nothing kept
            pass
        return None
    try:
        with tempfile.TemporaryFile(prefix="mlbackend-elf-") as spill:
            spill.write(head)
            for piece in chunks:
                spill.write(piece)
            spill.flush()
            with mmap.mmap(spill.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                return _elf(reader, member, mapped)
    except OSError as exc:
        raise WheelError(f"{reader.name}: cannot hold {member.name} in a temporary file: "
                         f"{exc.strerror or exc}",
                         tip="free space in the temporary folder (TMPDIR)") from None


def is_elf_head(wheel_name: str, member: str, head: bytes) -> bool:
    """True when ``head``, the start of ``member``, is an ELF file's; raises WheelError for
    an empty file named like a shared library (a broken build, not a data file)."""
    if not head and _SHARED_LIBRARY.search(member):
        raise WheelError(f"{wheel_name}: {member} is an empty file named like a "
                         "shared library", tip="rebuild the wheel from a clean build/")
    return head[:len(ELF_MAGIC)] == ELF_MAGIC


def _check(reader: WheelReader, member: Member) -> _Found:
    """Check ``member``; its ELF facts, its Python loader facts, or None."""
    if member.size > SPILL:
        return _large(reader, member)
    data = reader.read(member)
    if is_elf_head(reader.name, member.name, data[:len(ELF_MAGIC)]):
        return _elf(reader, member, data)
    if member.name.endswith(".py") and ".dist-info/" not in member.name:
        if not any(needle in data for needle in _NEEDLES):
            return None
        text = data.decode("utf-8", errors="replace")
        if not may_load(text):
            return None
        facts = scan_source(member.name, text)
        return facts if facts.loads or facts.global_loads else None
    return None


def _check_batch(reader: WheelReader, batch: Sequence[Member]) -> List[_Found]:
    return [_check(reader, member) for member in batch]


def scan_wheel(reader: WheelReader, *, workers: Optional[int] = None) -> WheelScan:
    """Check every member of ``reader`` (see the module doc); marks it verified."""
    elves: Dict[str, ElfInfo] = {}
    python: List[PythonFacts] = []

    def keep(found: Sequence[_Found], batch: Sequence[Member]) -> None:
        for member, facts in zip(batch, found):
            if isinstance(facts, ElfInfo):
                elves[member.name] = facts
            elif facts is not None:
                python.append(facts)

    threads = workers or _workers()
    batches = list(_batches(reader.members))
    if threads == 1:
        for batch in batches:
            keep(_check_batch(reader, batch), batch)
    else:
        with ThreadPoolExecutor(threads, thread_name_prefix="mlbackend-check") as pool:
            # the largest first, so that the last thread to finish is not one left alone
            # with the biggest library; the queue holds only member headers
            by_size = sorted(range(len(batches)), key=lambda i: -sum(
                m.compressed_size for m in batches[i]))
            futures: Dict[int, Future[List[_Found]]] = {
                i: pool.submit(_check_batch, reader, batches[i]) for i in by_size}
            try:
                for i, batch in enumerate(batches):  # in archive order: the first error wins
                    keep(futures[i].result(), batch)
            finally:
                for future in futures.values():
                    future.cancel()
    reader.verified = True
    return WheelScan(elves, tuple(sorted(python, key=lambda f: f.file)))
