"""What a device worker holds in memory against the weights its units need, side by side.

    .venv/bin/python benchmarks/worker_memory.py [--arch resnet50] [--input-size 224] [--workers 4]

For each share of a contiguous split of the network over ``--workers`` devices (and the whole
network on one, for reference), a fresh process starts a ``DeviceWorker``, places its units,
runs one request through them, and reports its private resident memory (RssAnon) above a bare
process that imported the same modules, next to what the cost model charges that device for
them: the units' weight bytes plus their activations (Eq. 1, m_j). Target: private memory <=
1.25x the cost model's + 8 MB (torch's scratch, the request's input), for every share: a device
holds its share, not the model (before session 6 every worker held the whole checkpoint and a
full skeleton, ~200 MB more at ResNet-50).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from adaptive_resnet.models.naming import DropPlan
from adaptive_resnet.profile import profile_model
from adaptive_resnet.runtime.cluster import WORKER_MALLOC_ENV
from adaptive_resnet.train import TrainConfig, build_model

CHILD = r"""
import json, sys
import torch
import adaptive_resnet.models, adaptive_resnet.runtime.worker, adaptive_resnet.train  # the modules, counted in the baseline
from adaptive_resnet.runtime.worker import DeviceWorker, to_wire

def anon_mb():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("RssAnon")) / 1024

path, units, shape = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
torch.set_num_threads(1)
base = anon_mb()
worker = DeviceWorker("d", path)
started = anon_mb()
worker.place(units)
x = torch.randn(*shape)
with torch.no_grad():
    worker.run(to_wire(x), units, DropPlan())
print(json.dumps({"start_mb": started - base, "mb": anon_mb() - base, "weight_bytes": worker.weight_bytes()}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    config = TrainConfig(data=".", arch=args.arch, stem="imagenet", base_channels=64, num_classes=1000)
    profile = profile_model(args.arch, args.input_size)
    names = profile.unit_names
    shares = [names[len(names) * k // args.workers : len(names) * (k + 1) // args.workers] for k in range(args.workers)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.pt"
        model = build_model(config).eval()
        torch.save({"model": model.state_dict(), "config": config.model_dump()}, path)
        inputs, x = {}, torch.randn(1, 3, args.input_size, args.input_size)  # each unit's input shape
        with torch.no_grad():
            for name in names:
                inputs[name] = list(x.shape)
                x = model.run_unit(name, x)
        env = {**os.environ, **WORKER_MALLOC_ENV}  # as the cluster starts its workers
        for units in [*shares, names]:
            out = subprocess.run([sys.executable, "-c", CHILD, str(path), json.dumps(units), json.dumps(inputs[units[0]])],
                                 capture_output=True, text=True, check=True, env=env)
            got = json.loads(out.stdout.strip().splitlines()[-1])
            expected = sum(profile[u].weight_bytes for u in units)
            assert got["weight_bytes"] == expected, (units, got["weight_bytes"], expected)
            charged = expected + sum(profile[u].memory_bytes for u in units)
            label = "whole model" if units is names else f"{units[0]}..{units[-1]}"
            rows.append((label, len(units), expected / 2**20, charged / 2**20, got["start_mb"], got["mb"]))
    print(f"{'units':<30} {'n':>3} {'weights_mb':>10} {'model_mb':>9} {'start_mb':>9} {'held_mb':>8} {'held/model':>10}")
    ok = True
    for label, n, weights_mb, charged_mb, start_mb, held_mb in rows:
        print(f"{label:<30} {n:>3} {weights_mb:>10.1f} {charged_mb:>9.1f} {start_mb:>9.1f} {held_mb:>8.1f} {held_mb / charged_mb:>9.2f}x")
        ok &= held_mb <= 1.25 * charged_mb + 8
    print("model_mb: the cost model's memory for those units (weights + activations, Eq. 1); start_mb: after the worker starts;")
    print("held_mb: after placing the units and running one request through them")
    print(f"target: private memory <= 1.25x the cost model's + 8 MB for every share: {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
