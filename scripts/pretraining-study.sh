#!/usr/bin/env bash
# The README's "Does pretraining help?" study, end to end: MIM-pretrain a tiny USFM ViT at 64 px on every image of
# the shared data (labels unused), then fine-tune it and a random initialisation on BUSI classification (10 % and
# 100 % of the labels), carotid segmentation (10 %, 30 and 100 epochs) and lung POCUS (5 folds grouped by patient),
# 5 or 3 seeds each.
#   scripts/pretraining-study.sh [DATA] [OUT]     defaults: ../shared/data, runs/pretraining_study
# Rerunning resumes every stage; on 2 CPU cores the pretraining takes about 23 minutes, the fine-tuning about an hour.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/data}
out=${2:-runs/pretraining_study}
for folder in unlabeled cls seg cls/BUSI seg/CCA_CAROTID cls/POCUS_LUNG; do
  [ -d "$data/$folder" ] || { echo "pretraining-study: no folder $data/$folder (DATA is ../shared/data's layout)" >&2; exit 1; }
done

./run.sh pretrain mim --data "$data/unlabeled" "$data/cls" "$data/seg" --model usfm_vit_tiny_patch16 --img-size 64 \
    --epochs 100 --batch-size 128 --out "$out/mim"

compare=(experiment compare --model usfm_vit_tiny_patch16 --img-size 64 --init scratch --init "mim:$out/mim")
./run.sh "${compare[@]}" --task cls --data "$data/cls/BUSI" --fractions 0.1,1.0 --seeds 5 \
    --set cls.epochs=15 --out "$out/busi"
./run.sh "${compare[@]}" --task cls --data "$data/cls/BUSI" --fractions 0.1 --seeds 5 \
    --set cls.epochs=150 --out "$out/busi_10"
./run.sh "${compare[@]}" --task seg --data "$data/seg/CCA_CAROTID" --fractions 0.1 --seeds 5 \
    --group-by acquisition_id --set seg.epochs=30 --out "$out/cca_10"
./run.sh "${compare[@]}" --task seg --data "$data/seg/CCA_CAROTID" --fractions 0.1 --seeds 3 \
    --group-by acquisition_id --set seg.epochs=100 --out "$out/cca_10_e100"
./run.sh "${compare[@]}" --task cls --data "$data/cls/POCUS_LUNG" --fractions 1.0 --seeds 3 --folds 5 \
    --group-by group --set cls.epochs=15 --out "$out/pocus"
