#!/usr/bin/env bash
# GPU check (one GPU, under 8 minutes, nothing downloaded): a short full-size swin_cls search with
# 1 GPU per trial, the same search packed 4 trials per GPU, and bf16 training throughput of the
# three backbones with 1, 2 and 4 trials per GPU. Prints images/s and trials/hour for each; the
# last line is the benchmark's JSON.
#
#   bash bench/gpu_check.sh            # on a GPU machine
#   bash bench/gpu_check.sh --tiny     # plumbing only: tiny sizes, and on CPU when there is no GPU
#   bash bench/gpu_check.sh --quick    # the same as without a flag (already short)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}"
export RAY_USAGE_STATS_ENABLED=0 TQDM_DISABLE=1 TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S=0

if nvidia-smi -L >/dev/null 2>&1; then
  DEVICE=cuda; GPU_FLAG_ONE=(--gpus-per-trial 1); GPU_FLAG_PACKED=(--gpus-per-trial 0.25)
  NAME="$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
else
  DEVICE=cpu; GPU_FLAG_ONE=(--gpus-per-trial 0); GPU_FLAG_PACKED=(--gpus-per-trial 0); NAME="cpu (dry run)"
fi
if [[ "${1:-}" == "--tiny" || "$DEVICE" == "cpu" ]]; then
  N=300; PRESET=smoke; SIZE=tiny; SECONDS_PER=2; CPT=1; KS="1 2"
  [[ "$DEVICE" == "cpu" && "${1:-}" != "--tiny" ]] && { echo "no GPU: run with --tiny for a CPU dry run" >&2; exit 2; }
else
  N=6000; PRESET=full; SIZE=full; SECONDS_PER=8; CPT=2; KS="1 2 4"
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu-check-XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
echo "device: $NAME; work dir $WORK" >&2

# The data: sim:model2:$N made once with several processes (the search would make it with one).
"$PY" -m tuner data simulate --instrument model2 --n "$N" --seed 0 --out "$WORK/data" \
  --workers "$(( $(nproc) > 8 ? 8 : $(nproc) ))" --no-progress >&2

search() {  # name, extra flags...
  local name="$1"; shift
  local t0 t1
  t0=$(date +%s.%N)
  "$PY" -m tuner search --space swin_cls --preset "$PRESET" --num-samples 4 --max-epochs 2 \
    --grace-period 1 --data "$WORK/data" --storage "$WORK/runs" --name "$name" --seed 0 \
    --cpus-per-trial "$CPT" "$@" >&2
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc
}
ONE_WALL=$(search one "${GPU_FLAG_ONE[@]}" --concurrency 1)
echo "search, 1 GPU per trial: ${ONE_WALL} s" >&2
PACKED_WALL=$(search packed "${GPU_FLAG_PACKED[@]}" --concurrency 4)
echo "search, 4 trials per GPU: ${PACKED_WALL} s" >&2

TPUT=()
for k in $KS; do
  "$PY" bench/_gpu.py throughput --trials "$k" --seconds "$SECONDS_PER" --size "$SIZE" --device "$DEVICE" \
    > "$WORK/tput$k.json"
  echo "bf16 throughput, $k per GPU: $(cat "$WORK/tput$k.json")" >&2
  TPUT+=("$WORK/tput$k.json")
done

"$PY" bench/_gpu.py summarize --one-dir "$WORK/runs/one" --packed-dir "$WORK/runs/packed" \
  --one-wall "$ONE_WALL" --packed-wall "$PACKED_WALL" --trials 4 --throughput "${TPUT[@]}" \
  --device-name "$NAME"
