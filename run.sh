#!/usr/bin/env bash
# Set up (or reuse) the project's virtual environment in .venv, then run:
#   ./run.sh demo [flags]     the main job (sonofm demo) on the built-in phantom data
#   ./run.sh test [pytest flags]   the test suite, in SONOFM_TEST_WORKERS (default 2) pytest-xdist processes
#   ./run.sh ARGS...          any sonofm command, e.g. ./run.sh finetune cls --help
set -euo pipefail
cd "$(dirname "$0")"

venv=.venv
python=${SONOFM_PYTHON:-python3.11}
if ! command -v "$python" >/dev/null 2>&1; then
  python=python3
fi
if [ ! -x "$venv/bin/python" ]; then
  "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' ||
    { echo "sonofm needs Python 3.11 (set SONOFM_PYTHON=/path/to/python3.11)" >&2; exit 1; }
  echo "creating $venv ..." >&2
  "$python" -m venv "$venv"
fi
stamp="$venv/.sonofm-installed"
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing sonofm with every extra but the GPL one, at the pins of constraints.txt, into $venv" \
    "(first run: several minutes) ..." >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[all,test]'
  echo "$want" > "$stamp"
fi

case "${1:-}" in
  demo) shift; exec "$venv/bin/sonofm" demo "$@" ;;
  test) shift; exec "$venv/bin/python" -m pytest -n "${SONOFM_TEST_WORKERS:-2}" --dist loadscope --no-loadscope-reorder "$@" ;;
  "") exec "$venv/bin/sonofm" --help ;;
  *) exec "$venv/bin/sonofm" "$@" ;;
esac
