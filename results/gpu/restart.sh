#!/bin/bash
# Second device call: a warm restart of both 30-epoch runs (run.sh) with a new one-cycle schedule,
# side by side on the one GPU. The 64 MiB carry limit leaves room for the starting weights only
# as fp16 (.devdata/*30-fp16.pt) and for a 1,000-image test subset (every 10th file) to watch
# the epochs; the full 10,000-image test and the studies run afterwards on the CPU.
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD/src
[ -n "${SKIP_WHEELS:-}" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
python3 results/gpu/pack_imagefolder.py unpack .devdata/cifar10-test1k.npz /tmp/cifar10 || exit 1
python3 -c "
from adaptive_resnet.data import load_images
for s in ('train', 'test'): print(s, len(load_images('/tmp/cifar10', s, cache_dir='runs/cache')))" || exit 1
EPOCHS=${EPOCHS:-15} LR=${LR:-0.05} DEVICE=${DEVICE:-cuda}
snapshot() {
  for r in plain dropaware; do [ -d /tmp/runs/$r ] && tar -C /tmp/runs -cf $OUT/$r.tar.tmp $r && mv $OUT/$r.tar.tmp $OUT/$r.tar; done
}
( while sleep 30; do snapshot; done ) &
SNAP=$!
AR="python3 -m adaptive_resnet.cli"
$AR train --out /tmp/runs/plain --data /tmp/cifar10 --init-from .devdata/plain30-fp16.pt --epochs $EPOCHS --lr $LR \
  --device $DEVICE ${EXTRA_TRAIN:-} > $OUT/plain.log 2>&1 &
P1=$!
$AR train --out /tmp/runs/dropaware --data /tmp/cifar10 --init-from .devdata/dropaware30-fp16.pt --epochs $EPOCHS --lr $LR \
  --device $DEVICE ${EXTRA_TRAIN:-} --drop-path-rate 0.2 --drop-path-schedule uniform > $OUT/dropaware.log 2>&1 &
P2=$!
wait $P1 $P2
kill $SNAP; snapshot
tail -n 2 $OUT/plain.log $OUT/dropaware.log
