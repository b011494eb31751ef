#!/usr/bin/env bash
# Table 8 at the tiny preset, end to end (CPU, offline): text-pretrain the backbone (base), train it further (g1),
# then the backbone_init sweep (random vs base vs g1) and its table. Usage: analysis/backbone_init_tiny.sh [ROOT]
# ROOT (default: a fresh folder under /tmp) receives mlflow.db, data/, weights/ and the sweep outputs.
# Run it in the project environment (. .venv/bin/activate). Steps: LM_STEPS, G1_STEPS, MM_STEPS, VAL_EVERY.
set -euo pipefail
trap '' TERM  # shared machines: a stray `pkill -f train.py` elsewhere must not end these long runs
REPO="$(cd "$(dirname "$0")/.." && pwd)"
ROOT="${1:-$(mktemp -d /tmp/modrwkv-backbone-init.XXXX)}"
export MODRWKV_ROOT="$ROOT"
LM_STEPS="${LM_STEPS:-200}"; G1_STEPS="${G1_STEPS:-100}"; MM_STEPS="${MM_STEPS:-150}"; VAL_EVERY="${VAL_EVERY:-50}"
cd "$ROOT"
if [ -z "${SKIP_BASE:-}" ]; then  # SKIP_BASE=1: reuse $ROOT/weights/tiny-lm-base.pth from an earlier run
  python "$REPO/src/train.py" task=lm backbone.scale=0.4b preset.max_steps="$LM_STEPS" preset.val_every=50 \
    task.batch_size=4 run_name=lm-base trainer.enable_progress_bar=false
fi
python "$REPO/src/train.py" task=lm task.variant=g1 backbone.scale=0.4b preset.max_steps="$G1_STEPS" \
  preset.val_every=50 task.batch_size=4 task.lr=5e-4 seed=43 run_name=lm-g1 trainer.enable_progress_bar=false
ls -l "$ROOT/weights/tiny-lm-base.pth" "$ROOT/weights/tiny-lm-g1.pth"  # both written, or stop here
python "$REPO/src/train.py" -m +sweep=backbone_init preset.max_steps="$MM_STEPS" preset.val_every="$VAL_EVERY" trainer.enable_progress_bar=false
python "$REPO/analysis/summarize.py" --sweep backbone_init --tracking-uri "sqlite:///$ROOT/mlflow.db" \
  --out "$ROOT/analysis"
