#!/usr/bin/env bash
# Issue 18, the CPU run of results/cifar-r50w16-kd: the committed plain network fine-tuned drop-aware on 45,000
# training images (5,000 held out), distilled from itself, stochastic depth 0.2 on every block,
# EMA of the weights. fp32: bf16 autocast is 4-6x slower than fp32 on this AVX2-only CPU.
cd "$(dirname "$0")/../.."
exec .venv/bin/adaptive-resnet train --out runs/r50w16-kd-ft --init-from results/cifar-r50w16/model.pt \
  --epochs 12 --lr 0.02 --schedule cosine \
  --drop-path-rate 0.2 --drop-path-schedule uniform --val 5000 --val-seed 0 \
  --teacher results/cifar-r50w16/model.pt --distill-alpha 0.8 --distill-temperature 4 \
  --ema-decay 0.998 --no-bf16 --threads 2 --device cpu
