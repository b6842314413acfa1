#!/usr/bin/env bash
# evonas GPU check: every figure the GPU path must show, in one command, on a one-GPU machine with
# PyTorch but no internet, no make and no plotly, in at most TOTAL_S seconds (default 520), with
# its results in a few files. From the repo root:
#
#     make gpu-check                   # = bash tools/gpu_check.sh; results in OUT (gpu-check-out)
#     DEVICE=cpu bash tools/gpu_check.sh   # the dry run CI affords: tiny settings, every step
#
# Bring along (tools/gpu_prepare.sh makes both where there is internet; docs/performance.md has
# the one device call):
#   WHL_DIR (.whl)     wheels of what the machine lacks (deap, moocore, cffi, pycparser, platformdirs);
#                      one whose module already imports here is not installed (it would shadow the
#                      machine's own); the rest go into a temporary folder, first on PYTHONPATH
#   EVONAS_DATA        a folder holding fashion-mnist/ (default: DATA_ROOT, else .data if it has it);
#                      EVONAS_NO_DOWNLOAD=1 is set, so missing data fails fast instead of hanging
#
# Everything runs in a temporary folder (TMPDIR or /tmp). Steps, in order of value, each under
# `timeout` (its limit, capped by what is left of TOTAL_S) and never stopping the rest:
#   env              versions, the GPU, which modules import, the torch APIs the GPU path relies on
#   tests            the CUDA-marked tests, in one pytest process (junit XML)
#   probe-proxy      DARTS-V2 at the GPU proxy, 2x and 4x its images, n=3: accuracy, s/evaluation
#   bench            evaluator vs reference loop (steady and whole rates), in flight at 1 and 4
#   probe-agreement  8 seeds alone vs 4 in flight, tolerance from the seed-to-seed spread, memory
#   probe-cudnn      cudnn.benchmark off vs on, n=3 each
#   search, resume   a short local-backend search with 2 in flight, then its resume one generation on
#   fidelity         only when STEPS names it: the GPU proxy's repeatability (a second visit's)
# OUT then holds at most 8 files, none in a folder: gpu-check.tar.gz (every log, step record, junit
# XML, the search's run folder, pip.log, nvidia-smi.txt), summary.json (every step; ok: all steps
# passed, no probe or bench evaluation failed, every measured evaluation took the graph path),
# env.json, probe-proxy.json, probe-agreement.json, probe-cudnn.json, bench.json, search.json.
# Exit code 0 when summary.json says ok, else 1.
#
# Knobs: OUT, PY, DEVICE (cuda | cpu), TOTAL_S, STEPS (comma list of step names or prefixes; default
# all but fidelity), WHL_DIR, EVONAS_DATA / DATA_ROOT, BENCH_ARGS, SEARCH_ARGS, FIDELITY_ARGS,
# COMMIT (what summary.json names), KEEP_WORK=1 (leave the temporary folder).
set -u -o pipefail
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1

DEVICE=${DEVICE:-cuda}
CPU=$([[ $DEVICE == cpu ]] && echo 1 || true)
OUT=${OUT:-$PWD/gpu-check-out}
PY=${PY:-python3}
TOTAL_S=${TOTAL_S:-520}
WHL_DIR=${WHL_DIR:-.whl}
STEPS=${STEPS:-all}
DEFAULT_STEPS=(env tests probe-proxy bench probe-agreement probe-cudnn search resume)
RESULTS=(summary.json env.json probe-proxy.json probe-agreement.json probe-cudnn.json bench/bench.json search.json)
ARCHIVE=gpu-check.tar.gz
COMMIT=${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo '?')}  # the device's copy has no .git
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
for f in "${RESULTS[@]}" "$ARCHIVE"; do rm -f "$OUT/$(basename "$f")"; done  # ours only, from an earlier run
W=$(mktemp -d "${TMPDIR:-/tmp}/evonas-gpu-check.XXXXXX")
mkdir -p "$W/steps"
START=$(date +%s)
DEADLINE=$(( START + TOTAL_S ))
ORDER=()

log() { echo "[$(date +%T) +$(( $(date +%s) - START ))s] $*" | tee -a "$W/steps.log"; }

want() {  # is step $1 asked for? (all: the default steps; else a comma list of names or prefixes)
    local s
    if [[ $STEPS == all ]]; then
        for s in "${DEFAULT_STEPS[@]}"; do [[ $1 == "$s" ]] && return 0; done
        return 1
    fi
    for s in ${STEPS//,/ }; do [[ $1 == "$s"* ]] && return 0; done
    return 1
}

record() {  # record NAME RC STATUS SECONDS NOTE: W/steps/NAME.json
    local note=${5//\"/}  # our own notes; no quotes in JSON strings
    printf '{"step": "%s", "rc": %s, "status": "%s", "seconds": %s, "log": "%s.log", "note": "%s"}\n' \
        "$1" "$2" "$3" "$4" "$1" "$note" > "$W/steps/$1.json"
    ORDER+=("$1")
    log "END $1: $3 (rc $2) in $4 s${5:+ ($5)}"
}

skip() { want "$1" && record "$1" 0 skipped 0 "$2"; }

# run_step NAME LIMIT CMD...: CMD under timeout (capped by what is left of TOTAL_S), its output
# in W/NAME.log. Never fails the script.
run_step() {
    local name=$1 limit=$2
    shift 2
    want "$name" || return 0
    [[ -n $CPU ]] && limit=$(( 3 * limit ))  # the dry run checks plumbing, not speed: a slow CI machine is fine
    local left=$(( DEADLINE - $(date +%s) - 10 ))  # 10 s kept for the summary and the archive
    (( limit > left )) && limit=$left
    if (( limit < 5 )); then
        record "$name" 0 skipped 0 "only ${left}s of the ${TOTAL_S}s budget left"
        return 0
    fi
    log "BEGIN $name (timeout ${limit}s): $*"
    local t0=$SECONDS rc status
    timeout --kill-after=10 "$limit" "$@" > "$W/$name.log" 2>&1
    rc=$?
    status=ok
    if (( rc == 124 || rc == 137 )); then status=timeout; elif (( rc != 0 )); then status=failed; fi
    tail -n 3 "$W/$name.log" | sed 's/^/    /'
    record "$name" "$rc" "$status" $(( SECONDS - t0 )) ""
}

# finish: summary.json, then OUT gets the archive and the result files; the exit code says ok.
finish() {
    trap - TERM INT
    PYTHONPATH="$PWD" "$PY" tools/gpu_summary.py summary "$W" "$DEVICE" "$TOTAL_S" "$START" "$COMMIT" "${ORDER[@]}" \
        2>&1 | tee -a "$W/steps.log"
    (cd "$W" && find . -path ./site -prune -o -type f -size +4M -print) > "$W/left-out.txt"  # too big to carry
    [[ -s $W/left-out.txt ]] && log "left out of the archive (over 4 MiB): $(tr '\n' ' ' < "$W/left-out.txt")"
    tar -czf "$OUT/$ARCHIVE" -C "$W" --exclude=./site --exclude-from="$W/left-out.txt" .
    for f in "${RESULTS[@]}"; do [[ -f $W/$f ]] && cp "$W/$f" "$OUT/"; done
    ls -l "$OUT"
    local rc=1
    grep -q '^  "ok": true,' "$W/summary.json" 2>/dev/null && rc=0
    if [[ ${KEEP_WORK:-} == 1 ]]; then echo "work folder kept: $W"; else rm -rf "$W"; fi
    exit $rc
}
trap 'log "stopped: packing what was measured"; finish' TERM INT

# ---------------------------------------------------------------- setup: wheels, data
log "gpu check: DEVICE=$DEVICE OUT=$OUT work $W, budget ${TOTAL_S}s, commit $COMMIT"
SITE=$W/site
if compgen -G "$WHL_DIR/*.whl" > /dev/null; then
    mapfile -t NEED < <(PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" "$PY" tools/gpu_wheels.py "$WHL_DIR" 2>> "$W/pip.log")
    PIP=("$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --disable-pip-version-check
         --upgrade --target "$SITE")
    if (( ${#NEED[@]} )) && ! "${PIP[@]}" "${NEED[@]}" >> "$W/pip.log" 2>&1; then
        for wheel in "${NEED[@]}"; do "${PIP[@]}" "$wheel" >> "$W/pip.log" 2>&1; done  # a bad one is only skipped
    fi
    log "installed ${#NEED[@]} of $(ls "$WHL_DIR"/*.whl | wc -l) wheels from $WHL_DIR (pip.log says which and why)"
    export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
    log "no wheels in $WHL_DIR: relying on what $PY has"
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
if [[ -z ${EVONAS_DATA:-} ]]; then
    for root in "${DATA_ROOT:-}" "$PWD/.data"; do
        if [[ -n $root ]] && compgen -G "$root/fashion-mnist/*ubyte*" > /dev/null; then export EVONAS_DATA=$root; break; fi
    done
fi
log "EVONAS_DATA=${EVONAS_DATA:-unset: evonas looks in the Debian package folder}"
export EVONAS_NO_DOWNLOAD=1
nvidia-smi > "$W/nvidia-smi.txt" 2>&1 || echo "no nvidia-smi" > "$W/nvidia-smi.txt"
EVONAS=("$PY" -m evo_nas)
have() { "$PY" -c "import $1" > /dev/null 2>&1; }

# ---------------------------------------------------------------- in order of value
run_step env 15 "$PY" tools/gpu_env.py "$W/env.json"

if want tests && ! have pytest; then
    skip tests "pytest does not import"
else
    mapfile -t FILES < <(grep -rlE "pytest\.mark\.cuda|cuda_test" tests --include='test_*.py' | sort)
    # -v: each test's outcome is in the log as it ends, so a timeout keeps them (the XML comes at the end)
    PYTEST=("$PY" -m pytest -m cuda -v -rfE --durations=10 -p no:cacheprovider -o faulthandler_timeout=60
            --junitxml="$W/tests.xml")
    have pytest_timeout && PYTEST+=(--timeout=90)
    run_step tests 95 "${PYTEST[@]}" "${FILES[@]}"  # one process: one CUDA context, imports once
fi

run_step probe-proxy 95 "$PY" tools/gpu_probe.py proxy "$W" "$DEVICE"

if [[ -n $CPU ]]; then
    BENCH_DEFAULT="--quick --measurements 1 --in-flight 1,2 --random-cells 0 --train-limit 64 --epochs 0.5"
else  # sized to fit: DARTS-V2 and NASNet-A vs the loop, n=2; 3k evaluations at k=1 and k=4, n=2
    BENCH_DEFAULT="--quick --measurements 2 --in-flight 1,4 --random-cells 0"
fi
# shellcheck disable=SC2086
run_step bench 130 "${EVONAS[@]}" bench --device "$DEVICE" --out "$W/bench" ${BENCH_ARGS-$BENCH_DEFAULT}

run_step probe-agreement 70 "$PY" tools/gpu_probe.py agreement "$W" "$DEVICE"
run_step probe-cudnn 30 "$PY" tools/gpu_probe.py cudnn "$W" "$DEVICE"

if [[ -n $CPU ]]; then
    SEARCH_DEFAULT="--workers 1 --population 2 --generations 1 --epochs 0.5 --train-limit 64 --val-limit 32
                    --init-channels 4 --depth 2 --batch-size 32 --bn-recalibration 32"
else
    SEARCH_DEFAULT="--slots-per-gpu 2 --population 6 --generations 1"  # 12 evaluations, then 6 resumed
fi
# With its report (the default): on a machine without plotly the tables are written, the page skipped.
# shellcheck disable=SC2086
run_step search 40 "${EVONAS[@]}" run --device "$DEVICE" --backend local --blocks 4 \
    --seed-genomes evo_nas/genomes/darts_v2.yaml --runs-dir "$W/runs" --name gpu-search ${SEARCH_ARGS-$SEARCH_DEFAULT}
if [[ -f $W/runs/gpu-search/journal.jsonl ]]; then
    run_step resume 25 "${EVONAS[@]}" resume "$W/runs/gpu-search" --generations 2
    "$PY" tools/gpu_summary.py search "$W" 2>&1 | tee -a "$W/steps.log"
else
    skip resume "the search left no run to resume"
fi

# A second visit's: the GPU proxy's repeatability, seed vs seed on 16 sampled cells.
if [[ -n $CPU ]]; then
    FIDELITY_DEFAULT="--genomes 4 --epochs 0.5 --train-limit 64 --val-limit 32 --init-channels 4 --depth 2
                      --batch-size 32 --bn-recalibration 32"
else
    FIDELITY_DEFAULT="--genomes 16"
fi
# shellcheck disable=SC2086
run_step fidelity 150 "${EVONAS[@]}" fidelity --device "$DEVICE" --no-reference \
    --runs-dir "$W/runs" --name gpu-fidelity ${FIDELITY_ARGS-$FIDELITY_DEFAULT}

finish
