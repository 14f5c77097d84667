"""Run the whole pipeline: sdist, a wheel per Python built from it, audit, test; one result."""

from __future__ import annotations

import contextvars
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

from .._log import emit
from ..errors import ConfigError, MlbackendError
from ..record import RECORD_ENV, read_record
from ..settings import load_settings, settings_env, settings_from
from ..tags import wheel_tags
from .python import Interpreter, find_interpreter
from .steps import (
    StepError,
    TestResult,
    backend_source_dir,
    build_backend_wheelhouse,
    build_sdist,
    build_wheel_from_sdist,
    check_test_sources,
    file_digest,
    installed_backend_wheel,
    test_wheel,
)

__all__ = ["BuildFailure", "PipelineOptions", "PipelineResult", "WheelResult", "run_pipeline"]

LogSink = Callable[[str, str], None]
"""Receives ``(title, full log text)`` of a finished step."""


@dataclass(frozen=True)
class PipelineOptions:
    """What to build and test; empty strings leave a setting to the project's own config."""

    package_dir: Path
    output_dir: Path
    python_versions: Tuple[str, ...]
    manylinux: str = ""
    baseline: str = ""
    before_build: str = ""
    test_requires: Tuple[str, ...] = ()
    test_command: str = ""
    test_sources: Tuple[str, ...] = ()
    """Paths in the project copied into the folder the tests run from (as cibuildwheel's
    ``test-sources``), so tests that import the package meet the installed wheel."""
    sdist: bool = True
    """Keep the sdist in ``output_dir`` (it is built either way: wheels are built from it)."""
    config_settings: Tuple[str, ...] = ()
    """``KEY=VALUE`` items passed to every build."""
    backend_source: Optional[Path] = None
    """A manylinux-backend checkout to build the backend wheel from (default: our own)."""
    backend_wheelhouse: Optional[Path] = None
    """A folder that already holds a manylinux-backend wheel (skips building one)."""
    jobs: int = 0
    """Parallel wheel builds; 0 means one per core."""
    archs: Tuple[str, ...] = ()
    """Architectures to build each Python's wheel for, each with zig (``-C arch=``); empty
    builds for the host only, in the baseline the settings choose."""


@dataclass(frozen=True)
class WheelResult:
    """One built, audited and tested wheel."""

    python: str
    interpreter: str
    path: Path
    tags: Tuple[str, ...]
    tag: str
    reason: str
    size: int
    sha256: str
    baseline: str
    """The baseline the build used (as the backend reported it), e.g. ``host``."""
    baseline_reason: str
    test: TestResult
    seconds: float
    arch: str = ""
    """The ``arch`` the wheel was built for (empty: the host's, no ``--archs`` given)."""

    def to_json(self) -> Dict[str, Any]:
        """The wheel's entry in the JSON report."""
        return {"path": str(self.path), "filename": self.path.name, "python": self.python,
                "interpreter": self.interpreter, "tags": list(self.tags), "tag": self.tag,
                "why": self.reason, "size": self.size, "sha256": self.sha256,
                "baseline": self.baseline, "baseline_reason": self.baseline_reason,
                "seconds": round(self.seconds, 1), "arch": self.arch,
                "test": {"result": self.test.status, "command": self.test.command,
                         "output_tail": self.test.output_tail}}


@dataclass(frozen=True)
class BuildFailure:
    """A Python whose wheel could not be built."""

    python: str
    message: str
    log_tail: str

    def to_json(self) -> Dict[str, Any]:
        """The failure's entry in the JSON report."""
        return {"python": self.python, "message": self.message, "log_tail": self.log_tail}


@dataclass(frozen=True)
class PipelineResult:
    """Everything the pipeline made: the CLI, the report and the Action render this."""

    package_dir: Path
    output_dir: Path
    sdist: Optional[Path]
    wheels: Tuple[WheelResult, ...]
    failures: Tuple[BuildFailure, ...] = field(default=())

    @property
    def failed_tests(self) -> Tuple[WheelResult, ...]:
        """The wheels whose test-command failed."""
        return tuple(w for w in self.wheels if w.test.status == "failed")

    @property
    def ok(self) -> bool:
        """True when every wheel built and passed (or skipped) its tests."""
        return not self.failures and not self.failed_tests

    def to_json(self) -> Dict[str, Any]:
        """The JSON report."""
        sdist: Optional[Dict[str, Any]] = None
        if self.sdist is not None:
            sdist = {"path": str(self.sdist), "filename": self.sdist.name,
                     "size": self.sdist.stat().st_size, "sha256": file_digest(self.sdist)}
        return {"report_version": 1, "ok": self.ok, "package_dir": str(self.package_dir),
                "output_dir": str(self.output_dir), "sdist": sdist,
                "wheels": [w.to_json() for w in self.wheels],
                "failures": [f.to_json() for f in self.failures]}


def _build_env(options: PipelineOptions, wheelhouse: Optional[Path]) -> Dict[str, str]:
    # The children see the wheelhouse, never the running checkout through PYTHONPATH.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    given = {name: value for name, value in (("manylinux", options.manylinux),
                                             ("baseline", options.baseline),
                                             ("before_build", options.before_build))
             if value.strip()}
    env.update(settings_env(settings_from(given, "the pipeline's options"), only=given))
    if wheelhouse is not None:
        links = env.get("PIP_FIND_LINKS", "")
        env["PIP_FIND_LINKS"] = f"{wheelhouse} {links}".strip()
        env.setdefault("MLBACKEND_WHEELHOUSE", str(wheelhouse))
    return env


def _config_dict(items: Tuple[str, ...]) -> Dict[str, Union[str, List[str]]]:
    out: Dict[str, Union[str, List[str]]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"config setting {item!r} is not KEY=VALUE")
        previous = out.get(key)
        if previous is None:
            out[key] = value
        else:
            out[key] = [*([previous] if isinstance(previous, str) else previous), value]
    return out


def _wheelhouse(options: PipelineOptions, work: Path) -> Path:
    if options.backend_wheelhouse is not None:
        if not list(options.backend_wheelhouse.glob("manylinux_backend-*.whl")):
            raise ConfigError(f"{options.backend_wheelhouse} holds no manylinux_backend wheel")
        return options.backend_wheelhouse.resolve()
    source = options.backend_source or backend_source_dir()
    if source is None:
        wheel = installed_backend_wheel(work / "wheelhouse")
        emit("info", f"isolated builds get {wheel.name}, packed from the installed copy")
        return wheel.parent
    emit("info", f"building a manylinux-backend wheel from {source}")
    return build_backend_wheelhouse(source.resolve(), work / "wheelhouse", work / "self.log")


def _audit(wheel: Path) -> Tuple[str, str]:
    from ..audit import audit_wheel

    try:
        report = audit_wheel(wheel)
    except MlbackendError as exc:
        return "", f"audit failed: {exc.message}"
    return report.tag, report.reason


def _facts(wheel: Path, record_path: Path) -> Tuple[str, str, str, str]:
    """Baseline, its reason, tag and why, from the build record the backend wrote; a build
    backend other than mlbackend writes none, so the wheel is audited here instead."""
    record = read_record(record_path)
    if record is not None and record.wheel == wheel.name:
        return record.baseline, record.baseline_reason, record.tag, record.reason
    tag, reason = _audit(wheel)
    return "", "the build backend wrote no mlbackend build record", tag, reason


def _arch_env(env: Mapping[str, str], arch: str) -> Dict[str, str]:
    """The build environment for one entry of ``--archs``: that arch, built with zig."""
    out = dict(env)
    if arch:
        out["MLBACKEND_ARCH"] = arch
        out.setdefault("MLBACKEND_BASELINE", "zig")
    return out


def _foreign(arch: str) -> bool:
    from ..baseline import host_arch

    return bool(arch) and arch != host_arch()


def _one_python(interp: Interpreter, sdist: Path, options: PipelineOptions, work: Path,
                env: Mapping[str, str],
                on_log: Optional[LogSink], arch: str = "") -> Union[WheelResult, BuildFailure]:
    start = time.monotonic()
    if arch:
        work = work / arch
        work.mkdir(parents=True, exist_ok=True)
        env = _arch_env(env, arch)
    log = work / f"build-{interp.version}.log"
    record_path = work / f"record-{interp.version}.json"
    emit("info", f"Python {interp.version}: building the wheel ({interp.path})")
    try:
        wheel = build_wheel_from_sdist(interp, sdist, options.output_dir, work,
                                       {**env, RECORD_ENV: str(record_path)},
                                       options.config_settings, log)
    except StepError as exc:
        if on_log is not None and log.exists():
            on_log(f"Python {interp.version}: build (failed)", log.read_text(errors="replace"))
        return BuildFailure(python=interp.version, message=exc.message, log_tail=exc.log_tail)
    log_text = log.read_text(errors="replace")
    if on_log is not None:
        on_log(f"Python {interp.version}: build {wheel.name}", log_text)
    baseline, baseline_reason, tag, reason = _facts(wheel, record_path)
    if options.before_build.strip() and baseline != "container":
        emit("warning", f"Python {interp.version}: before-build runs only in the container "
                        f"baseline; this build used {baseline or 'another'}, so it did not run")
    if _foreign(arch) and options.test_command.strip():
        emit("warning", f"Python {interp.version}: {wheel.name} is for {arch}: its tests "
                        "do not run on this machine")
        result = TestResult(status="skipped", output_tail=f"built for {arch}, not run here",
                            command="")
    else:
        emit("info", f"Python {interp.version}: testing {wheel.name}")
        result = test_wheel(interp, wheel, options.test_requires, options.test_command,
                            options.package_dir, work, env, options.test_sources)
    if on_log is not None and result.status != "skipped":
        on_log(f"Python {interp.version}: test {wheel.name} ({result.status})",
               result.output_tail)
    return WheelResult(python=interp.version, interpreter=str(interp.path), path=wheel,
                       tags=wheel_tags(wheel.name), tag=tag, reason=reason,
                       size=wheel.stat().st_size, sha256=file_digest(wheel), baseline=baseline,
                       baseline_reason=baseline_reason, test=result,
                       seconds=time.monotonic() - start, arch=arch)


def run_pipeline(options: PipelineOptions, on_log: Optional[LogSink] = None) -> PipelineResult:
    """Build the sdist, then a wheel per Python from it (in parallel), audit and test each."""
    if not (options.package_dir / "pyproject.toml").is_file() and not (
            options.package_dir / "setup.py").is_file():
        raise ConfigError(f"{options.package_dir} has no pyproject.toml or setup.py")
    interpreters = [find_interpreter(v) for v in options.python_versions]
    options = replace(options, package_dir=options.package_dir.resolve(),
                      output_dir=options.output_dir.resolve())
    check_test_sources(options.package_dir, options.test_sources)
    package_dir = options.package_dir
    options.output_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mlbackend-pipeline-") as tmp:
        work = Path(tmp)
        env = _build_env(options, _wheelhouse(options, work))
        load_settings(package_dir, _config_dict(options.config_settings), env)  # fail early
        emit("info", f"building the sdist of {package_dir}")
        sdist_log = work / "sdist.log"
        sdist = build_sdist(package_dir, work / "sdist", env, options.config_settings,
                            sdist_log)
        if on_log is not None:
            on_log(f"sdist {sdist.name}", sdist_log.read_text(errors="replace"))
        jobs = options.jobs or min(len(interpreters), os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = [pool.submit(contextvars.copy_context().run, _one_python, interp, sdist,
                                   options, work, env, on_log, arch)
                       for interp in interpreters for arch in options.archs or ("",)]
            outcomes = [f.result() for f in futures]
        kept: Optional[Path] = None
        if options.sdist:
            kept = options.output_dir / sdist.name
            shutil.copyfile(sdist, kept)
    return PipelineResult(
        package_dir=package_dir, output_dir=options.output_dir, sdist=kept,
        wheels=tuple(o for o in outcomes if isinstance(o, WheelResult)),
        failures=tuple(o for o in outcomes if isinstance(o, BuildFailure)))
