#!/usr/bin/env bash
# Prepare, where there is internet, what `make gpu-check` needs on a GPU machine without it
# (docs/performance.md has the one device call that carries them):
#   .whl/                 wheels for its Python (PYVER, default 3.12, manylinux x86_64) of what it
#                         lacks: deap and what deap imports that it does not have (moocore, cffi,
#                         pycparser, platformdirs). It has torch, numpy, pandas, click, PyYAML, rich,
#                         safetensors, onnx, pytest and pytest-timeout: carrying those would only
#                         shadow its own (gpu_check.sh would skip them anyway). One version each,
#                         pinned (WHEELS) to what the tests ran with.
#   .data/fashion-mnist/  the four IDX .gz files, from the Debian package's folder or FMNIST_DIR
# Both are ignored by git; name them in the call's carry list. Together with the tracked tree they
# must stay under the device's 64 MiB limit on what travels: this script checks that.
set -euo pipefail
PY=${PY:-python3}
PYVER=${PYVER:-3.12}
WHL_DIR=${WHL_DIR:-.whl}
FMNIST_DIR=${FMNIST_DIR:-/usr/share/datasets/fashion-mnist}
WHEELS=${WHEELS:-deap==1.4.4 moocore==0.3.2 cffi==2.1.1 pycparser==3.12 platformdirs==4.14.9}
LIMIT_MB=64

rm -rf "$WHL_DIR" && mkdir -p "$WHL_DIR" .data/fashion-mnist
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$p")
done
# shellcheck disable=SC2086
"$PY" -m pip download --disable-pip-version-check -q --no-deps --only-binary=:all: --python-version "$PYVER" \
    --implementation cp "${platforms[@]}" -d "$WHL_DIR" $WHEELS
cp "$FMNIST_DIR"/*-ubyte.gz .data/fashion-mnist/
ls -l "$WHL_DIR" .data/fashion-mnist

tracked=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
carried=$(du -cb "$WHL_DIR" .data | tail -1 | cut -f1)
total_mb=$(( (tracked + carried) / 1048576 ))
echo "travels: $(( tracked / 1048576 )) MiB tracked + $(( carried / 1048576 )) MiB carried = ${total_mb} MiB of ${LIMIT_MB}"
if (( total_mb >= LIMIT_MB )); then
    echo "too much to travel: leave something out" >&2
    exit 1
fi
echo "ready: carry $WHL_DIR and .data (see docs/performance.md for the call)"
