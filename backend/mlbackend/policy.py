"""PEP 600/599/656 policies, loaded from auditwheel's policy JSON shipped in ``policy_data/``
(a copy of auditwheel's own files, tested to be equal to the installed auditwheel's, so builds
need not install auditwheel)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, FrozenSet, Iterator, Mapping, Optional, Tuple

from .errors import ConfigError

__all__ = [
    "Policy",
    "PolicySet",
    "load_policies",
    "musl_libc_soname",
    "normalize_target",
    "policy_data_dir",
    "version_key",
]

_LEGACY = {"manylinux1": "manylinux_2_5", "manylinux2010": "manylinux_2_12",
           "manylinux2014": "manylinux_2_17"}
_TARGET_RE = re.compile(r"^(manylinux|musllinux)_(\d+)_(\d+)$")
# musl's libc soname differs per architecture; the policy file says just "libc.so".
_MUSL_LIBC = {
    "x86_64": "libc.musl-x86_64.so.1", "i686": "libc.musl-x86.so.1",
    "aarch64": "libc.musl-aarch64.so.1", "s390x": "libc.musl-s390x.so.1",
    "ppc64le": "libc.musl-ppc64le.so.1", "armv7l": "libc.musl-armv7.so.1",
    "riscv64": "libc.musl-riscv64.so.1", "loongarch64": "libc.musl-loongarch64.so.1",
}


def musl_libc_soname(arch: str) -> str:
    """The name musl systems give their libc on ``arch``, e.g. ``libc.musl-x86_64.so.1``."""
    return _MUSL_LIBC[arch]


@dataclass(frozen=True)
class Policy:
    """One platform policy for one architecture, e.g. ``manylinux_2_17_x86_64``."""

    name: str
    """Full platform tag, e.g. ``manylinux_2_17_x86_64`` (``linux_x86_64`` for the base)."""
    base: str
    """The tag without architecture, e.g. ``manylinux_2_17``."""
    aliases: Tuple[str, ...]
    """Legacy tags for the same policy, e.g. ``("manylinux2014_x86_64",)``."""
    priority: int
    """Higher is more compatible; ``linux`` is 0."""
    symbol_versions: Mapping[str, FrozenSet[str]]
    """Allowed versions per prefix, e.g. ``{"GLIBC": {"2.2.5", ...}}``."""
    whitelist: FrozenSet[str]
    """Sonames a system is guaranteed to have."""
    blacklist: Mapping[str, FrozenSet[str]]
    """Symbols that must not be used from a whitelisted library."""

    @property
    def is_linux(self) -> bool:
        """True for the plain ``linux_<arch>`` policy, which allows anything."""
        return self.priority == 0

    @property
    def tags(self) -> Tuple[str, ...]:
        """The policy's tag then its aliases, the order used in wheel file names."""
        return (self.name, *self.aliases)

    def version(self, prefix: str) -> Optional[Tuple[int, ...]]:
        """The newest allowed version for ``prefix`` (e.g. ``GLIBC`` -> ``(2, 17)``); names
        that are not numbers (``CXXABI_FLOAT128``, ``CXXABI_TM_1``) are not versions."""
        versions = [version_key(v) for v in self.symbol_versions.get(prefix, ())
                    if _NUMBERED.fullmatch(v)]
        return max(versions) if versions else None


@dataclass(frozen=True)
class PolicySet:
    """The policies of one libc and architecture, least compatible (``linux``) first."""

    libc: str
    arch: str
    policies: Tuple[Policy, ...]

    def __iter__(self) -> Iterator[Policy]:
        return iter(self.policies)

    @property
    def linux(self) -> Policy:
        """The base ``linux_<arch>`` policy."""
        return self.policies[0]

    @property
    def highest(self) -> Policy:
        """The most compatible policy."""
        return self.policies[-1]

    def find(self, target: str) -> Optional[Policy]:
        """The policy for a normalized target (``manylinux_2_17``) or full tag, if any."""
        for policy in self.policies:
            if target in (policy.base, policy.name) or f"{target}_{self.arch}" in policy.aliases:
                return policy
        return None


def policy_data_dir() -> Path:
    """The folder of the policy JSON files (auditwheel's, shipped with mlbackend)."""
    return Path(__file__).with_name("policy_data")


_NUMBERED = re.compile(r"\d+(?:\.\d+)*")


def version_key(version: str) -> Tuple[int, ...]:
    """Sort key for a version or version name: ``2.17`` and ``GLIBC_2.17`` -> (2, 17)."""
    return tuple(int(part) for part in re.findall(r"\d+", version))


def _read(libc: str) -> Any:
    path = policy_data_dir() / f"{'musllinux' if libc == 'musl' else 'manylinux'}-policy.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the policy data {path}: {exc}",
                          tip="reinstall manylinux-backend") from exc


def load_policies(libc: str, arch: str, target: str = "auto") -> PolicySet:
    """The policies for ``libc`` (``glibc``/``musl``) on ``arch``.

    For musl, as auditwheel does, only one musllinux policy is kept: the ``target`` when
    it names one, else the least compatible one (musl has no symbol versions that would
    prove an older musl suffices).
    """
    chosen: list[Policy] = []
    for raw in _read(libc):
        name = raw["name"]
        if name != "linux" and arch not in raw["symbol_versions"]:
            continue
        sv: Dict[str, FrozenSet[str]] = {}
        if name != "linux":
            sv = {k: frozenset(v) for k, v in raw["symbol_versions"][arch].items()}
        whitelist = frozenset(
            _MUSL_LIBC.get(arch, lib) if libc == "musl" and lib == "libc.so" else lib
            for lib in raw["lib_whitelist"])
        chosen.append(Policy(
            name=f"{name}_{arch}", base=name,
            aliases=tuple(f"{alias}_{arch}" for alias in raw.get("aliases", [])),
            priority=int(raw["priority"]), symbol_versions=sv, whitelist=whitelist,
            blacklist={k: frozenset(v) for k, v in raw.get("blacklist", {}).items()},
        ))
    chosen.sort(key=lambda p: p.priority)
    if libc == "musl" and len(chosen) > 2:
        keep = next((p for p in chosen if p.base == target), chosen[1])
        chosen = [chosen[0], keep]
    return PolicySet(libc=libc, arch=arch, policies=tuple(chosen))


def normalize_target(value: str) -> str:
    """Turn a user's target (``2_17``, ``2014``, ``manylinux2014``, ``musllinux_1_2``) into
    ``manylinux_X_Y``/``musllinux_X_Y``, or ``auto``; raises ConfigError otherwise."""
    text = value.strip().lower().replace("-", "_").replace(".", "_")
    for suffix in ("_x86_64", "_i686", "_aarch64", "_ppc64le", "_s390x", "_armv7l", "_riscv64"):
        if text.endswith(suffix):
            text = text[: -len(suffix)]
    if text == "auto":
        return text
    if re.fullmatch(r"\d+_\d+", text):
        text = f"manylinux_{text}"
    elif text in ("1", "2010", "2014"):
        text = f"manylinux{text}"
    text = _LEGACY.get(text, text)
    match = _TARGET_RE.match(text)
    known = {raw["name"] for libc in ("glibc", "musl") for raw in _read(libc)}
    if match is None or text not in known:
        choices = ", ".join(sorted(known - {"linux"}, key=lambda n: (n[:4], version_key(n))))
        raise ConfigError(f"unknown manylinux target {value!r}",
                          tip=f"use auto, a glibc version like 2_17, or one of: {choices}")
    return text
