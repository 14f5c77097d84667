"""The container baseline, for real: podman with the local image from .ci/setup-podman.sh."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Dict, List

import pytest
from conftest import (
    ROOT,
    auditwheel_tag,
    build,
    copy_project,
    install,
    make_venv,
    platform_tags,
    run,
)

from mlbackend.baseline.container import build_in_container, default_image
from mlbackend.errors import BaselineError
from mlbackend.settings import load_settings

IMAGE = "localhost/baseline-bookworm"
CTR_HOME = Path(os.environ.get("CTR_HOME", "/var/tmp/mlb-containers"))

PROBE_C = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#if HAVE_ANSWER
extern int mlb_answer(void);
#else
static int mlb_answer(void) { return 0; }
#endif

static PyObject *facts(PyObject *self, PyObject *args) {
    return Py_BuildValue("{s:i,s:i,s:i,s:i,s:i,s:i,s:i}", "in_container", IN_CONTAINER,
                         "no_network", NO_NETWORK, "saw_secret", SAW_SECRET,
                         "saw_epoch", SAW_EPOCH, "before_build", BEFORE_BUILD,
                         "helper", HELPER, "answer", mlb_answer());
}

static PyMethodDef methods[] = {{"facts", facts, METH_NOARGS, "Build facts."}, {NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "mlb_ctr_probe", NULL, -1, methods};
PyMODINIT_FUNC PyInit_mlb_ctr_probe(void) { return PyModule_Create(&module); }
"""

# Records, as C macros, what the build saw: where it ran, the network, which variables crossed.
PROBE_SETUP = """
import os
from setuptools import Extension, setup

try:
    import mlb_ctr_helper
    helper = mlb_ctr_helper.VALUE
except ImportError:
    helper = 0
seen = {
    "IN_CONTAINER": os.path.exists("/run/.containerenv") or os.path.exists("/.dockerenv"),
    "NO_NETWORK": os.listdir("/sys/class/net") == ["lo"],
    "SAW_SECRET": "MLB_TEST_SECRET" in os.environ,
    "SAW_EPOCH": os.environ.get("SOURCE_DATE_EPOCH") == "1700000000",
    "BEFORE_BUILD": os.path.exists("/tmp/mlb-before-build"),
    "HELPER": helper,
    # a library that only the container has (made by before-build): repair must vendor it
    "HAVE_ANSWER": os.path.exists("/usr/local/lib/libmlbanswer.so"),
}
setup(ext_modules=[Extension("mlb_ctr_probe", ["probe.c"],
                             define_macros=[(k, str(int(v))) for k, v in seen.items()],
                             libraries=["mlbanswer"] if seen["HAVE_ANSWER"] else [],
                             library_dirs=["/usr/local/lib"] if seen["HAVE_ANSWER"] else [])])
"""


def _pyproject(requires: List[str], table: str = "") -> str:
    quoted = ", ".join(f'"{r}"' for r in requires)
    return (f'[build-system]\nrequires = [{quoted}]\nbuild-backend = "mlbackend"\n\n'
            f'[project]\nname = "mlb-ctr-probe"\nversion = "0.1.0"\n\n{table}\n')


def _probe_project(root: Path, requires: List[str], table: str = "") -> Path:
    root.mkdir(parents=True)
    (root / "pyproject.toml").write_text(_pyproject(requires, table))
    (root / "setup.py").write_text(PROBE_SETUP)
    (root / "probe.c").write_text(PROBE_C)
    return root


def _env_sh() -> Dict[str, str]:
    """CONTAINERS_CONF / CONTAINERS_STORAGE_CONF from the environment, else from env.sh."""
    out = {k: os.environ[k] for k in ("CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF")
           if k in os.environ}
    env_sh = CTR_HOME / "env.sh"
    if len(out) < 2 and env_sh.is_file():
        for line in env_sh.read_text().splitlines():
            match = re.match(r"\s*export\s+(\w+)=(.*)$", line)
            if match:
                out.setdefault(match.group(1), match.group(2).strip().strip("'\""))
    return out


@pytest.fixture(scope="session")
def podman_env(build_env: Dict[str, str]) -> Dict[str, str]:
    """The build environment plus podman's config; fails when podman or the image is missing
    (.ci/setup-podman.sh provides both)."""
    env = {**build_env, **_env_sh()}
    problem = ""
    if shutil.which("podman") is None:
        problem = "podman is not installed"
    elif subprocess.run(["podman", "image", "exists", IMAGE], env=env,
                        capture_output=True).returncode:
        problem = f"podman has no image {IMAGE}"
    if problem:
        pytest.fail(f"{problem}: run .ci/setup-podman.sh")
    return env


@pytest.fixture
def podman_environ(podman_env: Dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """os.environ with podman's config, for calling the library in-process."""
    for key, value in _env_sh().items():
        monkeypatch.setenv(key, value)


def _build_fails(src: Path, env: Dict[str, str], *config: str) -> str:
    """A build expected to fail early, run without isolation (the backend from this checkout);
    returns its one ``mlbackend: error:`` line."""
    env = {**env, "PYTHONPATH": str(ROOT / "backend")}
    args = [sys.executable, "-m", "build", "--wheel", "-n", "-x", "-o", str(src / "dist"),
            str(src)]
    for item in config:
        args += ["-C", item]
    proc = run(args, env=env, check=False)
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("mlbackend: error:")]
    assert len(errors) == 1, output
    return errors[0]


@pytest.fixture(scope="session")
def probe_build(podman_env: Dict[str, str], tmp_path_factory: pytest.TempPathFactory):
    """The probe project built in the container, with one allowed and one foreign variable."""
    root = tmp_path_factory.mktemp("ctr-probe")
    src = _probe_project(root / "src", ["manylinux-backend", "setuptools"])
    env = {**podman_env, "MLB_TEST_SECRET": "1", "SOURCE_DATE_EPOCH": "1700000000"}
    proc = build(src, root / "dist", env, "baseline=container", f"image={IMAGE}")
    (wheel,) = (root / "dist").glob("*.whl")
    return wheel, proc.stdout + proc.stderr


@pytest.fixture(scope="session")
def c_ext_build(podman_env: Dict[str, str], tmp_path_factory: pytest.TempPathFactory):
    """examples/c_ext built in the container."""
    root = tmp_path_factory.mktemp("ctr-c-ext")
    src = copy_project("c_ext", root)
    proc = build(src, root / "dist", podman_env, "baseline=container", f"image={IMAGE}")
    (wheel,) = (root / "dist").glob("*.whl")
    return wheel, proc.stdout + proc.stderr


def _facts(wheel: Path, venv_dir: Path) -> Dict[str, int]:
    python = make_venv(venv_dir)
    install(python, wheel)
    proc = run([python, "-c", "import mlb_ctr_probe; print(mlb_ctr_probe.facts())"])
    return dict(ast.literal_eval(proc.stdout.strip()))


@pytest.mark.parametrize(("target", "image"), [
    ("manylinux_2_17", "quay.io/pypa/manylinux2014_x86_64"),
    ("manylinux_2_5", "quay.io/pypa/manylinux2014_x86_64"),
    ("manylinux_2_12", "quay.io/pypa/manylinux2014_x86_64"),
    ("manylinux_2_28", "quay.io/pypa/manylinux_2_28_x86_64"),
    ("manylinux_2_31", "quay.io/pypa/manylinux_2_28_x86_64"),
    ("manylinux_2_34", "quay.io/pypa/manylinux_2_34_x86_64"),
    ("manylinux_2_39", "quay.io/pypa/manylinux_2_34_x86_64"),
    ("musllinux_1_2", "quay.io/pypa/musllinux_1_2_x86_64"),
    ("auto", "quay.io/pypa/manylinux2014_x86_64"),
])
def test_default_image(target: str, image: str) -> None:
    assert default_image(target, "x86_64") == image


def test_default_image_per_arch() -> None:
    assert default_image("manylinux_2_28", "aarch64") == "quay.io/pypa/manylinux_2_28_aarch64"
    assert default_image("manylinux_2_28", "i686") == "quay.io/pypa/manylinux2014_i686"


def test_default_image_none_older() -> None:
    with pytest.raises(BaselineError, match="no pypa image for musllinux_1_1 on x86_64"):
        default_image("musllinux_1_1", "x86_64")


@pytest.mark.container
@pytest.mark.slow
def test_probe_wheel_built_audited_in_container(probe_build, tmp_path: Path) -> None:
    wheel, log = probe_build
    # audited and retagged: a manylinux tag, not the linux_x86_64 setuptools gives
    assert re.search(r"-cp3\d+-cp3\d+-[.\w]*manylinux_2_\d+_x86_64[.\w]*\.whl$",
                     wheel.name), wheel.name
    assert "building in podman image localhost/baseline-bookworm" in log
    assert "network none (the build requirements are in the image)" in log
    # one story: the outer choice once, the inner build as its second half
    assert log.count("mlbackend: baseline:") == 1, log
    assert "inside the container image localhost/baseline-bookworm:" in log, log
    assert "audit: manylinux_2_" in log
    facts = _facts(wheel, tmp_path / "venv")
    assert facts == {"in_container": 1, "no_network": 1, "saw_secret": 0, "saw_epoch": 1,
                     "before_build": 0, "helper": 0, "answer": 0}


@pytest.mark.container
@pytest.mark.slow
def test_c_ext_built_in_container_imports(c_ext_build, tmp_path: Path) -> None:
    wheel, log = c_ext_build
    # The image is Debian 12 (glibc 2.36); the example needs GLIBC_2.34 there.
    abi = "cp{}{}".format(*sys.version_info[:2])
    assert wheel.name.endswith(f"-{abi}-{abi}-manylinux_2_34_x86_64.whl"), wheel.name
    assert "network none" in log
    python = make_venv(tmp_path / "venv")
    install(python, wheel)
    proc = run([python, "-c", "import mlb_example_c as m; print(round(m.cube_root(27.0), 9))"])
    assert proc.stdout.strip() == "3.0"


@pytest.mark.container
@pytest.mark.slow
def test_requirement_from_wheelhouse_offline(podman_env: Dict[str, str], tmp_path: Path) -> None:
    helper = tmp_path / "helper"
    helper.mkdir()
    (helper / "pyproject.toml").write_text(textwrap.dedent("""\
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "mlb-ctr-helper"
        version = "1.0"
        """))
    (helper / "mlb_ctr_helper.py").write_text("VALUE = 7\n")
    house = tmp_path / "house"
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", house, helper])
    src = _probe_project(tmp_path / "src", ["manylinux-backend", "setuptools", "mlb-ctr-helper"])
    # the frontend's isolated environment on the host needs the helper too
    env = {**podman_env, "PIP_FIND_LINKS": f"{podman_env['PIP_FIND_LINKS']} {house}"}
    proc = build(src, tmp_path / "dist", env, "baseline=container", f"image={IMAGE}",
                  f"wheelhouse={house}")
    log = proc.stdout + proc.stderr
    assert "network none (mlb-ctr-helper from the wheelhouse)" in log
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    facts = _facts(wheel, tmp_path / "venv")
    assert facts["helper"] == 7
    assert facts["no_network"] == 1


@pytest.mark.container
@pytest.mark.slow
def test_before_build_runs_inside(podman_env: Dict[str, str], tmp_path: Path) -> None:
    commands = [
        "touch /tmp/mlb-before-build",
        "printf 'int mlb_answer(void) { return 42; }' > /tmp/answer.c && gcc -shared -fPIC "
        "-Wl,-soname,libmlbanswer.so -o /usr/local/lib/libmlbanswer.so /tmp/answer.c && ldconfig",
    ]
    src = _probe_project(tmp_path / "src", ["manylinux-backend", "setuptools"],
                         f"[tool.mlbackend]\nbefore-build = {json.dumps(commands)}")
    proc = build(src, tmp_path / "dist", podman_env, "baseline=container", f"image={IMAGE}")
    log = proc.stdout + proc.stderr
    assert "+ touch /tmp/mlb-before-build" in log
    assert "network on (before-build commands may download)" in log
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    assert re.search(r"-[.\w]*manylinux_2_\d+_x86_64[.\w]*\.whl$", wheel.name), wheel.name
    with zipfile.ZipFile(wheel) as archive:
        assert any(re.match(r"mlb_ctr_probe\.libs/libmlbanswer-[0-9a-f]+\.so", name)
                   for name in archive.namelist()), archive.namelist()
    assert not Path("/usr/local/lib/libmlbanswer.so").exists()
    facts = _facts(wheel, tmp_path / "venv")
    assert facts["before_build"] == 1
    assert facts["no_network"] == 0
    assert facts["answer"] == 42


@pytest.mark.container
@pytest.mark.slow
def test_requirement_downloaded_with_network(podman_env: Dict[str, str], tmp_path: Path) -> None:
    """A requirement the image lacks and no wheelhouse: pip inside gets it over the network
    (PyPI, verified with the host's CA bundle)."""
    src = _probe_project(tmp_path / "src", ["manylinux-backend", "setuptools", "tomli>=2"])
    env = {**podman_env, "PYTHONPATH": str(ROOT / "backend")}
    proc = run([sys.executable, "-m", "build", "--wheel", "-n", "-x", "-o", tmp_path / "dist",
                src, "-C", "baseline=container", "-C", f"image={IMAGE}"], env=env)
    log = proc.stdout + proc.stderr
    assert "network on (tomli>=2 must be downloaded)" in log
    assert "Successfully installed tomli-" in log
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    assert re.search(r"-[.\w]*manylinux_2_\d+_x86_64[.\w]*\.whl$", wheel.name), wheel.name


@pytest.mark.container
def test_target_missed_inside_is_one_line(podman_env: Dict[str, str], tmp_path: Path) -> None:
    """The backend's error inside the container comes back as the same one-line error."""
    src = copy_project("c_ext", tmp_path)
    line = _build_fails(src, podman_env, "baseline=container", f"image={IMAGE}",
                        "manylinux=2_17", "strict=true")
    assert line.startswith("mlbackend: error: the wheel needs manylinux_2_34_x86_64, which "
                           "misses the target manylinux_2_17"), line


@pytest.mark.container
def test_no_engine_on_path(podman_env: Dict[str, str], tmp_path: Path) -> None:
    src = copy_project("c_ext", tmp_path)
    empty = tmp_path / "bin"
    empty.mkdir()
    line = _build_fails(src, {**podman_env, "PATH": str(empty)}, "baseline=container",
                        f"image={IMAGE}")
    assert "container engine" in line, line


@pytest.mark.container
def test_docker_without_daemon(podman_env: Dict[str, str], tmp_path: Path) -> None:
    # a socket nobody listens on: with or without a docker client, docker is not usable
    env = {**podman_env, "DOCKER_HOST": f"unix://{tmp_path}/no-daemon.sock"}
    src = copy_project("c_ext", tmp_path)
    line = _build_fails(src, env, "baseline=container", "container-engine=docker",
                        f"image={IMAGE}")
    assert "docker" in line and "engine" in line, line


@pytest.mark.container
def test_image_missing(podman_env: Dict[str, str], tmp_path: Path) -> None:
    src = copy_project("c_ext", tmp_path)
    line = _build_fails(src, podman_env, "baseline=container", "image=localhost/does-not-exist")
    assert line == ("mlbackend: error: container image localhost/does-not-exist is not "
                    "available to podman and cannot be pulled"), line


@pytest.mark.container
def test_python_missing_in_image(podman_env: Dict[str, str], podman_environ: None,
                                 tmp_path: Path) -> None:
    src = copy_project("c_ext", tmp_path)
    settings = load_settings(src, {"baseline": "container", "image": IMAGE}, env={})
    with pytest.raises(BaselineError) as info:
        build_in_container(src, tmp_path / "dist", settings, {}, "cp38")
    assert str(info.value) == (
        f"container image {IMAGE} has no Python 3.8 (looked for "
        "/opt/python/cp38-cp38/bin/python and python3.8)")
    assert not (tmp_path / "dist").exists()


BULLSEYE = "localhost/baseline-bullseye"


def _pyenv_python(version: str) -> Path:
    """pyenv's newest ``version`` interpreter; fails when pyenv has none."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    found = sorted(root.glob(f"versions/{version}.*/bin/python{version}"))
    if not found:
        pytest.fail(f"no Python {version} under {root}/versions: install it with pyenv")
    return found[-1]


@pytest.mark.container
@pytest.mark.slow
def test_bullseye_image_lowers_the_tag(podman_env: Dict[str, str], builds, tmp_path: Path,
                                       pypi_cache: Path) -> None:
    """Python 3.9 builds c_ext in Debian 11 (glibc 2.31): the wheel needs at most
    manylinux_2_31, where the same example built on this host needs manylinux_2_34."""
    host_tags = platform_tags(builds.wheel("c_ext"))
    assert host_tags[0] == "manylinux_2_34_x86_64", host_tags
    if run(["podman", "image", "exists", BULLSEYE], env=podman_env, check=False).returncode:
        pytest.fail(f"podman has no image {BULLSEYE}: run .ci/setup-podman.sh")
    py39 = _pyenv_python("3.9")
    frontend = make_venv(tmp_path / "frontend", str(py39))
    run([sys.executable, "-m", "pip", "--python", frontend, "install", "-q", "build"])
    # bullseye's setuptools (52) predates PEP 621: the container gets a newer one offline
    house = pypi_cache / "bullseye-wheelhouse"
    run([sys.executable, "-m", "pip", "download", "-q", "--only-binary", ":all:",
         "--python-version", "3.9", "--dest", house, "setuptools>=61", "wheel"])
    src = copy_project("c_ext", tmp_path)
    out = tmp_path / "dist"
    proc = run([frontend, "-m", "build", "--wheel", "-o", out, src,
                "-C", "baseline=container", "-C", f"image={BULLSEYE}",
                "-C", "manylinux=2_31", "-C", f"wheelhouse={house}"], env=podman_env)
    log = proc.stdout + proc.stderr
    assert f"building in podman image {BULLSEYE}" in log, log
    assert "network none" in log, log
    (wheel,) = out.glob("*.whl")
    assert "-cp39-cp39-" in wheel.name, wheel.name
    tags = platform_tags(wheel)
    glibc = [tuple(map(int, t.split("_")[1:3])) for t in tags if t.startswith("manylinux_")]
    assert glibc and max(glibc) <= (2, 31), tags
    assert auditwheel_tag(wheel) in tags
    python = make_venv(tmp_path / "venv", str(py39))
    install(python, wheel)
    done = run([python, "-c", "import mlb_example_c as m; print(round(m.cube_root(27.0), 9))"],
               cwd=tmp_path)
    assert done.stdout.strip() == "3.0"
