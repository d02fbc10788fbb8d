#!/bin/bash
# The CIFAR runs on a lent GPU machine (device tool), in one call:
#   plain and drop-aware CIFAR ResNet-50 w16, trained side by side on the one GPU, then the full
#   study of each (singles, all DC pairs, 3- and 4-block random sets) on all 10,000 test images.
# Run from the repository root with .devdata/cifar10.npz (pack_imagefolder.py) and .whl/ carried;
# TRAIN_BUDGET_S sizes the epochs from a timing probe. Results come back as $OUT/<run>.tar.
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD/src
[ -n "${SKIP_WHEELS:-}" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 results/gpu/pack_imagefolder.py unpack .devdata/cifar10.npz /tmp/cifar10 || exit 1
AR="python3 -m adaptive_resnet.cli"
# Decode both splits into the cache once, before two trainings would both try to.
python3 -c "
import time; t=time.perf_counter()
from adaptive_resnet.data import load_images
for s in ('train', 'test'): print(s, len(load_images('/tmp/cifar10', s, cache_dir='runs/cache')))
print(f'decoded in {time.perf_counter()-t:.1f} s')" || exit 1
DEVICE=${DEVICE:-cuda}  # DEVICE=cpu EPOCHS=1 EXTRA_TRAIN=--limit-train=512 EXTRA_STUDY=--limit=200: a dry run
# Two trainings share the GPU; each is launch-bound, so together they run at most ~2x slower.
[ -n "${EPOCHS:-}" ] || python3 results/gpu/probe.py $OUT/probe.json || exit 1
EPOCHS=${EPOCHS:-$(python3 -c "import json; e=json.load(open('$OUT/probe.json'))['epoch_s']; print(max(30, min(80, int(${TRAIN_BUDGET_S:-360} / (1.8 * e + 1.5)))))")}
echo "epochs: $EPOCHS"
snapshot() {  # what is finished so far comes back even if the call is cut off
  for r in plain dropaware; do [ -d /tmp/runs/$r ] && tar -C /tmp/runs -cf $OUT/$r.tar.tmp $r && mv $OUT/$r.tar.tmp $OUT/$r.tar; done
}
( while sleep 45; do snapshot; done ) &
SNAP=$!
$AR train --out /tmp/runs/plain --data /tmp/cifar10 --epochs $EPOCHS --device $DEVICE ${EXTRA_TRAIN:-} > $OUT/plain.log 2>&1 &
P1=$!
$AR train --out /tmp/runs/dropaware --data /tmp/cifar10 --epochs $EPOCHS --device $DEVICE ${EXTRA_TRAIN:-} \
  --drop-path-rate 0.2 --drop-path-schedule uniform > $OUT/dropaware.log 2>&1 &
P2=$!
wait $P1 $P2
tail -n 2 $OUT/plain.log $OUT/dropaware.log
for r in plain dropaware; do
  $AR study --checkpoint /tmp/runs/$r/last.pt --out /tmp/runs/$r/study --data /tmp/cifar10 --device $DEVICE ${EXTRA_STUDY:-} \
    --random-k 3 --random-k 4 --random-count 10 >> $OUT/$r.log 2>&1 &
  STUDIES="${STUDIES:-} $!"
done
wait $STUDIES
kill $SNAP; snapshot
tail -n 1 $OUT/plain.log $OUT/dropaware.log
ls -la $OUT
