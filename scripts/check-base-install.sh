#!/usr/bin/env bash
# The base install on its own: a fresh virtual environment with `pip install -c constraints.txt .` (no extras)
# fine-tunes a classifier on phantom data, and `sonofm sam finetune` there fails with one line naming `sonofm[sam]`.
# Everything lives in a temporary folder that is removed at the end (torch included: about 6 GB while it runs).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${SONOFM_PYTHON:-python3.11}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

mkdir "$work/source"  # built from a copy: an in-tree build would leave build/ in the checkout
cp -r pyproject.toml README.md constraints.txt src "$work/source/"
rm -rf "$work/source/src/"*.egg-info
"$python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-compile \
  -c "$work/source/constraints.txt" "$work/source"
sonofm="$work/venv/bin/sonofm"
cd "$work"  # away from the checkout: the installed package runs, not src/

"$sonofm" data phantom --out phantom --n-per-class 8 --size 64 >/dev/null
"$sonofm" finetune cls --data phantom/cls --out run --model usfm_vit_tiny_patch16 --set 'model_args={depth: 2}' \
  --img-size 64 --epochs 1 --batch-size 16 --num-workers 0 --no-progress >finetune.log 2>&1 ||
  { tail -n 30 finetune.log >&2; echo "base install: finetune cls failed" >&2; exit 1; }
test -f run/metrics.json

expected="sonofm: error: sonofm sam needs the \`sam\` extra: pip install 'sonofm[sam]'"
status=0
said=$("$sonofm" sam finetune --data phantom/seg --out sam-run 2>&1 >/dev/null) || status=$?
if [ "$status" != 2 ] || [ "$said" != "$expected" ]; then
  printf 'base install: sam finetune exited %s and said:\n%s\n' "$status" "$said" >&2
  exit 1
fi
echo "base install: finetune cls ran; sam finetune names the sam extra"
