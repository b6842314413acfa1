#!/usr/bin/env bash
# A plain (non-editable) install must work: build the wheel, install it into a fresh virtual
# environment (reusing the CPU torch of .venv through --system-site-packages would hide missing
# package data, so the torch wheel is installed again, from pip's cache), and use it from a
# folder that is not the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
.venv/bin/python -m pip wheel --no-deps -q -w "$work/dist" . 2>/dev/null
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --disable-pip-version-check -q "${TORCH_SPEC:-torch==2.13.0}" 2>/dev/null
"$work/venv/bin/pip" install --disable-pip-version-check -q "$work"/dist/evo_nas-*.whl 2>/dev/null
cd "$work"
"$work/venv/bin/evonas" inspect darts_v2 --json | "$work/venv/bin/python" -c \
    "import json, sys; s = json.load(sys.stdin); assert s['params'] == 3_349_342, s; print('inspect ok:', s['params'])"
"$work/venv/bin/evonas" run --space nb201 --init-channels 4 --depth 1 --train-limit 64 --val-limit 32 \
    --bn-recalibration 32 --batch-size 32 --population 2 --generations 1 --runs-dir "$work/runs" --name w >/dev/null
test -f "$work/runs/w/report.html" && echo "run ok: $work/runs/w/report.html"
