"""Settings: one frozen model, read from env > config-settings > pyproject > defaults."""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Optional, Tuple

from .errors import ConfigError
from .policy import normalize_target
from .pyproject import read_table

__all__ = [
    "SETUPTOOLS_KEYS",
    "Settings",
    "load_settings",
    "normalize_arch",
    "settings_env",
    "settings_from",
    "setuptools_config",
    "split_config_settings",
]

_BASELINES = ("auto", "container", "zig", "host")
_ENGINES = ("auto", "docker", "podman")
_ARCHES = ("x86_64", "i686", "aarch64", "ppc64le", "s390x", "armv7l", "riscv64", "loongarch64")
_ARCH_ALIASES = {"amd64": "x86_64", "x86": "i686", "i386": "i686", "arm64": "aarch64",
                 "ppc64el": "ppc64le", "armhf": "armv7l", "armv7": "armv7l",
                 "loong64": "loongarch64", "host": ""}
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")

# config-settings keys that belong to setuptools and are passed on to it untouched
SETUPTOOLS_KEYS = frozenset({"--build-option", "--global-option", "editable_mode",
                             "editable-mode", "--editable-mode"})


@dataclass(frozen=True)
class Settings:
    """What mlbackend does with a build; each field is also ``MLBACKEND_<FIELD>``,
    ``-C <field>=`` and ``[tool.mlbackend] <field>`` (with ``-`` for ``_``)."""

    manylinux: str = "auto"
    """Target policy: ``auto`` (most compatible the binary allows), ``2_17``, ``2014``,
    ``manylinux_2_28``, ``musllinux_1_2``..."""
    strict: bool = False
    """Fail the build when the target is missed (default: on when ``CI`` is set or inside
    a baseline image, else off: a warning and the honest tag)."""
    repair: bool = True
    """Vendor external shared libraries into ``<name>.libs/``."""
    exclude: Tuple[str, ...] = field(default=(), metadata={"split": "words"})
    """Soname globs never vendored (their own dependencies are skipped too)."""
    baseline: str = "auto"
    """Where the compile runs: ``auto``, ``container``, ``zig`` or ``host``."""
    image: str = ""
    """Container image for ``baseline = container`` (default: the pypa image of the target)."""
    container_engine: str = "auto"
    """``auto``, ``docker`` or ``podman``."""
    before_build: Tuple[str, ...] = field(default=(), metadata={"split": "lines"})
    """Shell commands run inside the container before the build (e.g. installing -devel
    packages)."""
    wheelhouse: str = ""
    """A folder of wheels the container build installs its build requirements from."""
    strip: bool = False
    """Strip debug symbols from vendored libraries."""
    arch: str = ""
    """The architecture to build for: ``x86_64``, ``aarch64``, ``ppc64le``, ``s390x``,
    ``riscv64``, ``i686``, ``armv7l``... (default, ``""``: the host's). Another one than the
    host's is built with zig."""

    @property
    def target(self) -> str:
        """The normalized target: ``auto``, ``manylinux_X_Y`` or ``musllinux_X_Y``."""
        return self.manylinux


def normalize_arch(text: str, where: str) -> str:
    """A wheel architecture (``arm64`` -> ``aarch64``; ``""``/``host``: the host's, as ``""``);
    ConfigError naming ``where`` for an unknown one."""
    arch = _ARCH_ALIASES.get(text.strip().lower(), text.strip().lower())
    if arch and arch not in _ARCHES:
        raise ConfigError(f"{where} must be one of {', '.join(_ARCHES)}, not {text!r}")
    return arch


def _key(name: str) -> str:
    return name.replace("_", "-")


_FIELDS = {_key(f.name): f for f in fields(Settings)}


def _unknown(key: str, where: str, prefix: str = "") -> ConfigError:
    bare = key[len(prefix):].lower().replace("_", "-") if prefix else key
    close = difflib.get_close_matches(bare, list(_FIELDS), n=1)
    shown = [f"{prefix}{k.upper().replace('-', '_')}" if prefix else k for k in _FIELDS]
    tip = (f"did you mean {shown[list(_FIELDS).index(close[0])]!r}?" if close
           else f"known keys: {', '.join(shown)}")
    return ConfigError(f"unknown setting {key!r} in {where}", tip=tip)


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return type(value).__name__


def _as_bool(value: Any, key: str, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if not isinstance(value, str):
        raise ConfigError(f"{key} in {where} must be true or false, not {_kind(value)}")
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"{key} in {where} must be true or false, not {value!r}")


def _as_str(value: Any, key: str, where: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{key} in {where} must be a string, not {_kind(value)}")
    return value.strip()


def _as_tuple(value: Any, key: str, where: str, split: str) -> Tuple[str, ...]:
    if isinstance(value, (list, tuple)):
        if not all(isinstance(v, str) for v in value):
            bad = next(v for v in value if not isinstance(v, str))
            raise ConfigError(f"{key} in {where} must be a list of strings; it holds "
                              f"{_kind(bad)}")
        return tuple(v for v in value if v.strip())
    if not isinstance(value, str):
        raise ConfigError(f"{key} in {where} must be a string or a list of strings, not "
                          f"{_kind(value)}")
    if split == "lines":
        return tuple(line for line in value.splitlines() if line.strip())
    return tuple(part for part in value.replace(",", " ").split() if part)


def _coerce(key: str, value: Any, where: str) -> Any:
    """``value`` as the type of field ``key``; a one-line ConfigError if it is not one."""
    spec = _FIELDS[key]
    if spec.type in ("bool", bool):
        return _as_bool(value, key, where)
    if spec.type in ("Tuple[str, ...]", Tuple[str, ...]):
        return _as_tuple(value, key, where, spec.metadata.get("split", "words"))
    text = _as_str(value, key, where)
    if key == "manylinux":
        return normalize_target(text)
    if key == "baseline" and text not in _BASELINES:
        raise ConfigError(f"baseline in {where} must be one of {', '.join(_BASELINES)}, "
                          f"not {text!r}")
    if key == "arch":
        return normalize_arch(text, f"arch in {where}")
    if key == "container-engine" and text not in _ENGINES:
        raise ConfigError(f"container-engine in {where} must be one of {', '.join(_ENGINES)}, "
                          f"not {text!r}")
    return text


def split_config_settings(
    config_settings: Optional[Mapping[str, Any]],
) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Split PEP 517 config-settings into mlbackend's and setuptools' own; unknown keys fail."""
    ours: Dict[str, Any] = {}
    theirs: Dict[str, Any] = {}
    for raw_key, value in (config_settings or {}).items():
        key = raw_key[len("mlbackend."):] if raw_key.startswith("mlbackend.") else raw_key
        key = key.replace("_", "-")
        if raw_key in SETUPTOOLS_KEYS:
            theirs[raw_key] = value
        elif key in _FIELDS:
            ours[key] = value
        else:
            raise _unknown(raw_key, "config-settings (-C)")
    return ours, theirs


def setuptools_config(config_settings: Optional[Mapping[str, Any]]) -> Optional[Dict[str, Any]]:
    """The config-settings meant for setuptools (mlbackend's own keys removed)."""
    _, theirs = split_config_settings(config_settings)
    return theirs or None


def _pyproject_table(source_dir: Path) -> Dict[str, Any]:
    return read_table(source_dir, "tool", "mlbackend")


def _env_is_true(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() not in _FALSE


def load_settings(
    source_dir: Path,
    config_settings: Optional[Mapping[str, Any]] = None,
    env: Optional[Mapping[str, str]] = None,
) -> Settings:
    """Read the settings for a build of ``source_dir``, highest precedence first:
    ``MLBACKEND_*`` environment variables, config-settings, ``[tool.mlbackend]``, defaults."""
    env = os.environ if env is None else env
    values: Dict[str, Any] = {}
    for key, value in _pyproject_table(source_dir).items():
        if key not in _FIELDS:
            raise _unknown(key, f"[tool.mlbackend] of {source_dir / 'pyproject.toml'}")
        values[key] = _coerce(key, value, "[tool.mlbackend]")
    ours, _ = split_config_settings(config_settings)
    for key, value in ours.items():
        values[key] = _coerce(key, value, "config-settings (-C)")
    for name, value in env.items():
        if not name.startswith("MLBACKEND_"):
            continue
        key = _key(name[len("MLBACKEND_"):].lower())
        if key not in _FIELDS:
            raise _unknown(name, "the environment", prefix="MLBACKEND_")
        values[key] = _coerce(key, value, f"${name}")
    if "strict" not in values:
        values["strict"] = _env_is_true(env, "CI") or bool(env.get("AUDITWHEEL_PLAT"))
    return replace(Settings(), **{_FIELDS[k].name: v for k, v in values.items()})


def settings_env(settings: Settings, only: Optional[Iterable[str]] = None) -> Dict[str, str]:
    """The ``MLBACKEND_*`` variables that reproduce ``settings`` (or just the fields named in
    ``only``) in another process."""
    out: Dict[str, str] = {}
    wanted = None if only is None else set(only)
    for f in fields(Settings):
        if wanted is not None and f.name not in wanted:
            continue
        value = getattr(settings, f.name)
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, tuple):
            text = ("\n" if f.metadata.get("split") == "lines" else " ").join(value)
        else:
            text = str(value)
        out[f"MLBACKEND_{f.name.upper()}"] = text
    return out


def settings_from(values: Mapping[str, Any], where: str) -> Settings:
    """The defaults with ``values`` (field name -> raw value) coerced by field type; a
    ConfigError naming ``where`` for an unknown key or a bad value."""
    out: Dict[str, Any] = {}
    for name, value in values.items():
        key = _key(name)
        if key not in _FIELDS:
            raise _unknown(key, where)
        out[_FIELDS[key].name] = _coerce(key, value, where)
    return replace(Settings(), **out)
