#!/usr/bin/env bash
# Issue 18, the honest run: a drop-aware width-16 CIFAR ResNet-50 from scratch on the 45,000
# training images `--val 5000 --val-seed 0` leaves (the 5,000 never trained on, so its
# validation figures are held out), stochastic depth 0.2 on every block, distilled from the
# plain network's cached logits on those 45,000, EMA of the weights, one-cycle to 0.1 over
# 60 epochs. Resumes from runs/r50w16-kd-scratch/last.pt (copy the committed checkpoint there:
#   mkdir -p runs && cp -r results/in-progress/r50w16-kd-scratch runs/ ).
# ~10 minutes an epoch alone on 2 cores (run it alone, or with --threads 1 beside other jobs).
cd "$(dirname "$0")/../.."
exec .venv/bin/adaptive-resnet train --out runs/r50w16-kd-scratch \
  --epochs 60 --lr 0.1 --schedule onecycle \
  --drop-path-rate 0.2 --drop-path-schedule uniform --val 5000 --val-seed 0 \
  --teacher results/cifar-r50w16/model.pt --distill-alpha 0.8 --distill-temperature 4 \
  --ema-decay 0.998 --no-bf16 --threads 2 --device cpu
