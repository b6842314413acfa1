#!/usr/bin/env bash
# Prepare, where there is internet, what `make gpu-check` needs on a GPU machine without it:
#   .whl/                 wheels of what that machine lacks (it has torch, numpy, pandas, click,
#                         PyYAML and rich): deap and what it imports (moocore, cffi, pycparser,
#                         platformdirs), pytest and its parts, pytest-timeout, safetensors. The
#                         compiled ones for each Python in PYVERS (default 3.10 to 3.13, manylinux
#                         x86_64): gpu_check.sh installs those that fit, one by one
#   .data/fashion-mnist/  the four IDX .gz files, from the Debian package's folder or FMNIST_DIR
# Both are ignored by git; carry them with the working tree (about 40 MB in all).
set -euo pipefail
PY=${PY:-python3}
PYVERS=${PYVERS:-3.10 3.11 3.12 3.13}
WHL_DIR=${WHL_DIR:-.whl}
FMNIST_DIR=${FMNIST_DIR:-/usr/share/datasets/fashion-mnist}
PURE=(deap pytest pluggy iniconfig packaging pygments pytest-timeout pycparser platformdirs)
COMPILED=(moocore cffi safetensors)
mkdir -p "$WHL_DIR" .data/fashion-mnist
download() { "$PY" -m pip download --disable-pip-version-check -q --no-deps --only-binary=:all: -d "$WHL_DIR" "$@"; }
download "${PURE[@]}"
for version in $PYVERS; do
    download --python-version "$version" --implementation cp --platform manylinux2014_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 "${COMPILED[@]}"
done
cp -n "$FMNIST_DIR"/*-ubyte.gz .data/fashion-mnist/
ls -l "$WHL_DIR" .data/fashion-mnist
echo "ready: carry $WHL_DIR and .data with the working tree, then run make gpu-check there"
