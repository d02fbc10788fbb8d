#!/usr/bin/env bash
# Issue 18: the committed plain and old drop-aware networks studied on the same 5,000
# validation images (`--val 5000 --val-seed 0`) as the new one, for the side-by-side table.
# Both trained on all 50,000 training images, so for them these are training images: their
# validation figures say how the three compare on one image set, not how they generalise.
# ~14 minutes each on 2 cores with nothing else running.
set -e
cd "$(dirname "$0")/../.."
A=.venv/bin/adaptive-resnet
for net in cifar-r50w16 cifar-r50w16-dropaware; do
  $A study --checkpoint results/$net/model.pt --out runs/val-$net --val 5000 --val-seed 0 --device cpu --random-k 3 --random-k 4 --random-count 10
  mkdir -p results/$net/val && cp runs/val-$net/study.json runs/val-$net/study.csv results/$net/val/
done
