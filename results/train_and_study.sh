#!/bin/bash
# Background: the two committed CIFAR runs, side by side on one core each, each followed by its study.
cd /work/main
export OMP_NUM_THREADS=1
( .venv/bin/adaptive-resnet train --out runs/cifar-r50w16 --epochs 18 --threads 1 >> runs/cifar-r50w16.log 2>&1
  .venv/bin/adaptive-resnet study --checkpoint runs/cifar-r50w16/last.pt --out runs/cifar-r50w16/study --random-k 3 --random-k 4 --random-count 10 >> runs/cifar-r50w16.log 2>&1 ) &
( .venv/bin/adaptive-resnet train --out runs/cifar-r50w16-dropaware10 --epochs 10 --threads 1 --drop-path-rate 0.2 --drop-path-schedule uniform >> runs/cifar-r50w16-dropaware10.log 2>&1
  .venv/bin/adaptive-resnet study --checkpoint runs/cifar-r50w16-dropaware10/last.pt --out runs/cifar-r50w16-dropaware10/study --random-k 3 --random-k 4 --random-count 10 >> runs/cifar-r50w16-dropaware10.log 2>&1 ) &
wait
