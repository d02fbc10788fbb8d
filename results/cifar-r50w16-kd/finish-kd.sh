#!/usr/bin/env bash
# Issue 18, after train-kd.sh's 12 epochs: the drop study of the fine-tuned network, first on
# the 5,000 held-out training images (what any further choice is made on), then once on the
# test split (the single test figure), each ~11 minutes on 2 cores with nothing else running.
# Then export the weights beside the other networks and compute the estimate's error.
set -e
cd "$(dirname "$0")/../.."
A=.venv/bin/adaptive-resnet
RUN=runs/r50w16-kd-ft
$A study --checkpoint $RUN/last.pt --out $RUN/study-val --val 5000 --val-seed 0 --device cpu --random-k 3 --random-k 4 --random-count 10
$A study --checkpoint $RUN/last.pt --out $RUN/study --device cpu --random-k 3 --random-k 4 --random-count 10
mkdir -p results/cifar-r50w16-kd
.venv/bin/python -c "from adaptive_resnet.train import export_checkpoint as e; e('$RUN/last.pt', 'results/cifar-r50w16-kd/model.pt')"
cp $RUN/study/study.json $RUN/study/study.csv $RUN/study/pairs.png $RUN/config.json $RUN/history.json results/cifar-r50w16-kd/
mkdir -p results/cifar-r50w16-kd/val && cp $RUN/study-val/study.json $RUN/study-val/study.csv results/cifar-r50w16-kd/val/
.venv/bin/python -c "from adaptive_resnet import study_report as s; import json; json.dump(s.estimate_error('results/cifar-r50w16-kd/study.json'), open('results/cifar-r50w16-kd/estimate_error.json', 'w'), indent=1)"
echo "then: docs/study.md side by side (study_report.comparison_markdown, study_report.robustness_markdown)"
