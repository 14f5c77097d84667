#!/usr/bin/env bash
# Re-download the pinned PyPI wheels into this folder and rewrite expected.json
# from what the installed auditwheel computes for each of them.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-python3}

fetch() {  # fetch PLATFORM PYTHON_VERSION REQUIREMENT
    "$python" -m pip download --quiet --no-deps --only-binary=:all: --no-cache-dir \
        --platform "$1" --python-version "$2" --dest "$here" "$3"
}

fetch manylinux1_x86_64      3.8  markupsafe==1.1.1
fetch manylinux1_x86_64      3.11 murmurhash==1.0.10
fetch manylinux2014_x86_64   3.11 markupsafe==2.1.3
fetch manylinux2014_x86_64   3.11 editdistance==0.8.1
fetch manylinux_2_28_x86_64  3.11 bcrypt==4.3.0
fetch manylinux_2_34_x86_64  3.11 bcrypt==4.3.0
fetch manylinux1_x86_64      3.9  cffi==1.14.6
fetch musllinux_1_1_x86_64   3.11 markupsafe==2.1.3
fetch musllinux_1_2_x86_64   3.11 markupsafe==3.0.2
fetch manylinux2014_aarch64  3.11 markupsafe==2.1.3

"$python" - "$here" <<'PY'
import json
import pathlib
import subprocess
import sys

here = pathlib.Path(sys.argv[1])
expected = {}
for wheel in sorted(here.glob("*.whl")):
    shown = subprocess.run(
        [sys.executable, "-m", "auditwheel", "show", "--json", str(wheel)],
        check=True, capture_output=True, text=True,
    )
    expected[wheel.name] = json.loads(shown.stdout)["overall_tag"]
(here / "expected.json").write_text(json.dumps(expected, indent=2) + "\n")
print(json.dumps(expected, indent=2))
PY
