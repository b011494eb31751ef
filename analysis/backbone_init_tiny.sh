#!/usr/bin/env bash
# Table 8 at the tiny preset, end to end (CPU, offline): text-pretrain the backbone (base), train it further (g1),
# then the backbone_init sweep (random vs base vs g1, several seeds) and its table. This is the recipe whose numbers
# are in analysis/RESULTS.md. Usage: analysis/backbone_init_tiny.sh [ROOT]
# ROOT (default: a fresh folder under /tmp) receives mlflow.db, data/, weights/ and the sweep outputs.
# Run it in the project environment (. .venv/bin/activate). Settings (environment):
#   LM_STEPS (800) base text pretraining steps of task=lm's 8 x 128 tokens; G1_STEPS (300) further steps for g1
#   SEEDS (0,1,2,3,4) the multimodal seeds; MM_STEPS / VAL_EVERY (the preset's: 300 / 100)
#   VAL_SIZE / TEST_SIZE (512 / 1024) validation and test questions (the preset has 128 / 256: a few questions
#   would be a few points of accuracy); validation generates answers for all VAL_SIZE questions
#   SKIP_BASE=1 / SKIP_G1=1 / SKIP_SWEEP=1 reuse the checkpoints in $ROOT/weights, or stop before the sweep
set -euo pipefail
trap '' TERM  # shared machines: a stray `pkill -f train.py` elsewhere must not end these long runs
REPO="$(cd "$(dirname "$0")/.." && pwd)"
ROOT="${1:-$(mktemp -d /tmp/modrwkv-backbone-init.XXXX)}"
export MODRWKV_ROOT="$ROOT"
LM_STEPS="${LM_STEPS:-800}"; G1_STEPS="${G1_STEPS:-300}"; SEEDS="${SEEDS:-0,1,2,3,4}"
MM_STEPS="${MM_STEPS:-300}"; VAL_EVERY="${VAL_EVERY:-100}"; VAL_SIZE="${VAL_SIZE:-512}"; TEST_SIZE="${TEST_SIZE:-1024}"
EVAL_BATCHES=$(( (VAL_SIZE + 63) / 64 ))  # the tiny preset's eval batch is 64 questions
cd "$ROOT"
stamp() { echo "[$(date -u +%FT%TZ)] $*"; }
if [ -z "${SKIP_BASE:-}" ]; then
  stamp "base: task=lm, $LM_STEPS steps"
  python "$REPO/src/train.py" task=lm backbone.scale=0.4b preset.max_steps="$LM_STEPS" preset.val_every=100 \
    run_name=lm-base trainer.enable_progress_bar=false
fi
if [ -z "${SKIP_G1:-}" ]; then
  stamp "g1: base + $G1_STEPS steps"
  python "$REPO/src/train.py" task=lm task.variant=g1 backbone.scale=0.4b preset.max_steps="$G1_STEPS" \
    preset.val_every=100 task.lr=5e-4 seed=43 run_name=lm-g1 trainer.enable_progress_bar=false
fi
ls -l "$ROOT/weights/tiny-lm-base.pth" "$ROOT/weights/tiny-lm-g1.pth"  # both written, or stop here
[ -n "${SKIP_SWEEP:-}" ] && exit 0
stamp "sweep: backbone random,base,g1 x seed $SEEDS"
python "$REPO/src/train.py" -m +sweep=backbone_init seed="$SEEDS" preset.max_steps="$MM_STEPS" \
  preset.val_every="$VAL_EVERY" preset.data_sizes.val="$VAL_SIZE" preset.data_sizes.test="$TEST_SIZE" \
  preset.limit_val_batches="$EVAL_BATCHES" eval.max_batches="$EVAL_BATCHES" trainer.enable_progress_bar=false
stamp "summarize"
python "$REPO/analysis/summarize.py" --sweep backbone_init --all-parents --tracking-uri "sqlite:///$ROOT/mlflow.db" \
  --out "$ROOT/analysis"
stamp "done"
