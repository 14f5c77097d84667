"""Runs inside the build container with the image's Python (3.8+, the standard library and
the carried ``packaging``): installs what the build lacks, then calls the backend's hook."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import Any, Dict, List, NoReturn

# The hook without its error boundary (functools.wraps keeps it as __wrapped__), so a known
# error reaches the caller with its kind, message and tip instead of as a printed line.
# (setuptools replaces sys.argv while it builds: read it first.)
BUILD = ("import json, sys, mlbackend\n"
         "config, result_path = json.loads(sys.argv[1]), sys.argv[2]\n"
         "from mlbackend._boundary import as_error\n"
         "from mlbackend.errors import MlbackendError\n"
         "hook = getattr(mlbackend.build_wheel, '__wrapped__', mlbackend.build_wheel)\n"
         "try:\n"
         "    name = hook('/out', config)\n"
         "except (MlbackendError, OSError) as caught:\n"
         "    exc = as_error(caught)\n"
         "    result = {'error': exc.message, 'tip': exc.tip, 'kind': type(exc).__name__}\n"
         "    code = 2\n"
         "else:\n"
         "    result, code = {'wheel': name}, 0\n"
         "with open(result_path, 'w') as handle:\n"
         "    json.dump(result, handle)\n"
         "sys.exit(code)\n")
RESULT = "/out/.mlbackend-result.json"


def missing(requires: List[str]) -> List[str]:
    from importlib import metadata

    from packaging.requirements import Requirement
    out = []
    for text in requires:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate():
            continue
        try:
            version = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            out.append(text)
            continue
        if not req.specifier.contains(version, prereleases=True):
            out.append(text)
    return out


def fail(message: str, code: int = 3) -> NoReturn:
    with open(RESULT, "w") as handle:
        json.dump({"error": message}, handle)
    sys.stderr.write("mlbackend: error: %s\n" % message)
    sys.exit(code)


def build(plan: Dict[str, Any]) -> None:
    for command in plan["before_build"]:
        print("+ " + command, flush=True)
        if subprocess.call(["sh", "-c", command]):
            fail("before-build command failed: " + command)
    skip = set(plan["skip"])
    shutil.copytree("/mlb/src", "/tmp/mlb/src", symlinks=True, ignore=lambda d, names: [
        n for n in names if n == "__pycache__" or (d == "/mlb/src" and n in skip)])
    env = dict(os.environ)
    env["PATH"] = env.get("PATH", "/usr/bin:/bin") + ":/mlb/bin"  # the image's own tools first
    need = missing(plan["requires"])
    if need:
        where = ["--no-index", "--find-links", "/mlb/wheelhouse"] if plan["wheelhouse"] else []
        pip = [sys.executable, "-m", "pip", "install", "--target", "/tmp/mlb/reqs", *where, *need]
        print("+ " + " ".join(pip), flush=True)
        if subprocess.call(pip):
            fail("cannot install the build requirements " + ", ".join(need))
        env["PYTHONPATH"] = "/tmp/mlb/reqs:" + env.get("PYTHONPATH", "")
    code = subprocess.call([sys.executable, "-c", BUILD, json.dumps(plan["config"]), RESULT],
                           cwd="/tmp/mlb/src", env=env)
    for name in os.listdir("/out"):  # readable by a host user other than the engine's root
        os.chmod(os.path.join("/out", name), 0o644)
    if code and not os.path.exists(RESULT):
        fail("the build failed (exit code %d)" % code, code)
    sys.exit(code)


def main() -> None:
    """``probe``: report the Python and the missing requirements; else build."""
    with open("/mlb/plan.json") as handle:
        plan = json.load(handle)
    if sys.argv[1] == "probe":
        print(json.dumps({"python": sys.executable, "missing": missing(plan["requires"])}))
    else:
        build(plan)


if __name__ == "__main__":
    main()
