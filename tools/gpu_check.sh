#!/usr/bin/env bash
# evonas GPU check: what the GPU path must show, in one command, on a one-GPU machine with
# PyTorch but no internet, in at most TOTAL_S seconds (default 470). From the repo root:
#
#     make gpu-check                   # = bash tools/gpu_check.sh; results under OUT (gpu-check-out)
#     make gpu-check DEVICE=cpu        # the dry run CI affords: tiny settings, every step, about a minute
#
# Bring along (tools/gpu_prepare.sh makes both where there is internet):
#   WHL_DIR (.whl)     wheels of what the machine lacks: deap and moocore, cffi (required), pytest and
#                      its parts (the tests), safetensors (test_fulltrain); installed one by one
#                      into OUT/site-packages, first on PYTHONPATH; nothing else is touched
#   EVONAS_DATA        a folder holding fashion-mnist/ (default: DATA_ROOT, else .data if it has it);
#                      EVONAS_NO_DOWNLOAD=1 is set, so missing data fails fast instead of hanging
#
# Steps, each under `timeout` and never stopping the rest (a failing or hung step is recorded):
#   env              versions, the GPU, which modules import, the torch APIs the GPU path relies on
#   probe-proxy      DARTS-V2 at the GPU proxy (accuracy, images/s, s/evaluation), 2x images, batch 256
#   probe-agreement  8 seeds one at a time vs 4 in flight: per-seed results agree (tolerance in the JSON)
#   tests-<file>     the CUDA-marked tests, one pytest per file, junit XML each
#   probe-cudnn      cudnn.benchmark off vs on, DARTS-V2, bf16, n=3 each
#   search           a short local-backend search, 2 in flight, DARTS-V2 seeded
#   fidelity         evonas fidelity --no-reference: the GPU proxy's seed-vs-seed repeatability, n=16
#   bench            evonas bench --in-flight 1,2,4 (steady state; bench.json is written as it goes)
# OUT gets: steps/<step>.json ({"step", "rc", "status": ok|timeout|failed|skipped, "seconds", "log",
# "note"}), summary.json (all of them, in order), <step>.log, tests-*.xml, probe-*.json, env.json,
# bench/bench.json, runs/gpu-search/, search_summary.json, nvidia-smi.txt.
#
# Knobs: OUT, PY, DEVICE (cuda | cpu), TOTAL_S, STEPS (comma list of step names, or prefixes such
# as tests; default all), WHL_DIR, EVONAS_DATA / DATA_ROOT, BENCH_ARGS, SEARCH_ARGS, FIDELITY_ARGS.
set -u -o pipefail
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1

DEVICE=${DEVICE:-cuda}
CPU=$([[ $DEVICE == cpu ]] && echo 1 || true)
OUT=${OUT:-$PWD/gpu-check-out}
PY=${PY:-python3}
TOTAL_S=${TOTAL_S:-470}
WHL_DIR=${WHL_DIR:-.whl}
STEPS=${STEPS:-all}
mkdir -p "$OUT/steps"
OUT=$(cd "$OUT" && pwd)
START=$(date +%s)
DEADLINE=$(( START + TOTAL_S ))
ORDER=()

log() { echo "[$(date +%T) +$(( $(date +%s) - START ))s] $*" | tee -a "$OUT/steps.log"; }

want() {  # is step $1 asked for? (STEPS=all, or a comma list of names or prefixes)
    [[ $STEPS == all ]] && return 0
    local s
    for s in ${STEPS//,/ }; do [[ $1 == "$s"* ]] && return 0; done
    return 1
}

record() {  # record NAME RC STATUS SECONDS NOTE: OUT/steps/NAME.json
    local note=${5//\"/}  # our own notes; no quotes in JSON strings
    printf '{"step": "%s", "rc": %s, "status": "%s", "seconds": %s, "log": "%s.log", "note": "%s"}\n' \
        "$1" "$2" "$3" "$4" "$1" "$note" > "$OUT/steps/$1.json"
    ORDER+=("$1")
    log "END $1: $3 (rc $2) in $4 s${5:+ ($5)}"
}

skip() { record "$1" 0 skipped 0 "$2"; }

# run_step NAME LIMIT CMD...: CMD under timeout (capped by what is left of TOTAL_S), its output
# in OUT/NAME.log. Never fails the script.
run_step() {
    local name=$1 limit=$2
    shift 2
    want "$name" || return 0
    [[ -n $CPU ]] && limit=$(( 3 * limit ))  # the dry run checks plumbing, not speed: a slow CI machine is fine
    local left=$(( DEADLINE - $(date +%s) - 5 ))
    (( limit > left )) && limit=$left
    if (( limit < 5 )); then
        skip "$name" "only ${left}s of the ${TOTAL_S}s budget left"
        return 0
    fi
    log "BEGIN $name (timeout ${limit}s): $*"
    local t0=$SECONDS rc status
    timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
    rc=$?
    status=ok
    if (( rc == 124 || rc == 137 )); then status=timeout; elif (( rc != 0 )); then status=failed; fi
    tail -n 3 "$OUT/$name.log" | sed 's/^/    /'
    record "$name" "$rc" "$status" $(( SECONDS - t0 )) ""
}

# ---------------------------------------------------------------- setup: wheels, data
log "gpu check: DEVICE=$DEVICE OUT=$OUT budget ${TOTAL_S}s, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
SITE=$OUT/site-packages
if compgen -G "$WHL_DIR/*.whl" > /dev/null; then
    rm -rf "$SITE" && mkdir -p "$SITE"
    installed=0
    for wheel in "$WHL_DIR"/*.whl; do  # one by one: a wheel built for another Python is only skipped
        "$PY" -m pip install -q --no-index --no-deps --disable-pip-version-check --target "$SITE" "$wheel" \
            >> "$OUT/pip.log" 2>&1 && installed=$(( installed + 1 ))
    done
    log "installed $installed of $(ls "$WHL_DIR"/*.whl | wc -l) wheels from $WHL_DIR into $SITE (pip.log)"
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
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || echo "no nvidia-smi" > "$OUT/nvidia-smi.txt"
EVONAS=("$PY" -m evo_nas)
have() { "$PY" -c "import $1" > /dev/null 2>&1; }

# ---------------------------------------------------------------- env
run_step env 60 "$PY" tools/gpu_env.py "$OUT/env.json"

# ---------------------------------------------------------------- the probe
run_step probe-proxy 90 "$PY" tools/gpu_probe.py proxy "$OUT" "$DEVICE"
run_step probe-agreement 100 "$PY" tools/gpu_probe.py agreement "$OUT" "$DEVICE"

# ---------------------------------------------------------------- CUDA-marked tests, one file at a time
if want tests; then
    if ! have pytest; then
        skip tests "pytest does not import: put pytest, pluggy, iniconfig and packaging wheels in $WHL_DIR"
    else
        PYTEST=("$PY" -m pytest -m cuda -q -rA -p no:cacheprovider -o faulthandler_timeout=60)
        have pytest_timeout && PYTEST+=(--timeout=90)
        mapfile -t FILES < <(grep -rlE "pytest\.mark\.cuda|cuda_test" tests --include='test_*.py' | sort)
        if [[ -n $CPU ]]; then  # the dry run: one pytest that collects them all (each test is skipped here)
            run_step tests-collect 60 "${PYTEST[@]}" --collect-only --junitxml="$OUT/tests-collect.xml" "${FILES[@]}"
        else
            tests_end=$(( $(date +%s) + ${TESTS_S:-150} ))
            for file in "${FILES[@]}"; do
                name=tests-$(basename "$file" .py)
                run_step "$name" $(( tests_end - $(date +%s) < 100 ? tests_end - $(date +%s) : 100 )) \
                    "${PYTEST[@]}" --junitxml="$OUT/$name.xml" "$file"
            done
        fi
    fi
fi

run_step probe-cudnn 45 "$PY" tools/gpu_probe.py cudnn "$OUT" "$DEVICE"

# ---------------------------------------------------------------- a short search
if [[ -n $CPU ]]; then
    SEARCH_DEFAULT="--workers 1 --population 2 --generations 1 --epochs 0.5 --train-limit 64 --val-limit 32
                    --init-channels 4 --depth 2 --batch-size 32 --bn-recalibration 32"
else
    SEARCH_DEFAULT="--slots-per-gpu 2 --population 8 --generations 1"
fi
rm -rf "$OUT/runs/gpu-search"
# shellcheck disable=SC2086
run_step search 75 "${EVONAS[@]}" run --device "$DEVICE" --backend local --blocks 4 \
    --seed-genomes evo_nas/genomes/darts_v2.yaml --no-report --runs-dir "$OUT/runs" --name gpu-search ${SEARCH_ARGS-$SEARCH_DEFAULT}
if want search && [[ -f $OUT/runs/gpu-search/journal.jsonl ]]; then
    "$PY" - "$OUT/runs/gpu-search/journal.jsonl" "$OUT/search_summary.json" <<'EOF' 2>&1 | tee -a "$OUT/steps.log"
import collections, json, sys
records = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
ok = [r for r in records if r.get("status") == "ok"]
summary = {"evaluations": len(records), "status": dict(collections.Counter(r.get("status") for r in records)),
           "paths": dict(collections.Counter(r.get("path") for r in ok)),
           "fallbacks": sorted({r["fallback"] for r in ok if r.get("fallback")}),
           "errors": sorted({r["error"] for r in records if r.get("error")})[:10],
           "accuracy_max": max((r["accuracy"] for r in ok), default=None),
           "images_per_s": sorted(r["images_per_s"] for r in ok if r.get("images_per_s"))}
json.dump(summary, open(sys.argv[2], "w"), indent=2)
print("search summary:", json.dumps(summary)[:1500])
EOF
fi

# ---------------------------------------------------------------- evonas fidelity
# The GPU proxy's repeatability, seed vs seed on 16 sampled cells (about 32 evaluations at the
# preset); the reference (10x the images) does not fit this budget: run it on its own visit with
# `evonas fidelity --device cuda` (it resumes like a run).
if [[ -n $CPU ]]; then
    FIDELITY_DEFAULT="--genomes 4 --epochs 0.5 --train-limit 64 --val-limit 32 --init-channels 4 --depth 2
                      --batch-size 32 --bn-recalibration 32"
else
    FIDELITY_DEFAULT="--genomes 16"
fi
rm -rf "$OUT/runs/gpu-fidelity"
# shellcheck disable=SC2086
run_step fidelity 150 "${EVONAS[@]}" fidelity --device "$DEVICE" --no-reference --no-report \
    --runs-dir "$OUT/runs" --name gpu-fidelity ${FIDELITY_ARGS-$FIDELITY_DEFAULT}
[[ -f $OUT/runs/gpu-fidelity/fidelity.json ]] && cp "$OUT/runs/gpu-fidelity/fidelity.json" "$OUT/fidelity.json"

# ---------------------------------------------------------------- the bench, last: it keeps what it measured
if [[ -n $CPU ]]; then
    BENCH_DEFAULT="--quick --repeats 1 --in-flight 1,2 --random-cells 0 --train-limit 64 --epochs 0.5"
else
    BENCH_DEFAULT="--quick --repeats 3 --in-flight 1,2,4"
fi
# shellcheck disable=SC2086
run_step bench 300 "${EVONAS[@]}" bench --device "$DEVICE" --out "$OUT/bench" ${BENCH_ARGS-$BENCH_DEFAULT}

# ---------------------------------------------------------------- summary.json
{
    printf '{"device": "%s", "commit": "%s", "started": "%s", "seconds": %s, "budget_s": %s, "steps": [\n' \
        "$DEVICE" "$(git rev-parse --short HEAD 2>/dev/null || echo '?')" "$(date -d "@$START" +%FT%T)" \
        $(( $(date +%s) - START )) "$TOTAL_S"
    sep=""
    for name in "${ORDER[@]}"; do printf '%s  %s' "$sep" "$(cat "$OUT/steps/$name.json")"; sep=$',\n'; done
    printf '\n]}\n'
} > "$OUT/summary.json"
log "done in $(( $(date +%s) - START ))s: $OUT/summary.json"
cat "$OUT/summary.json"
exit 0
