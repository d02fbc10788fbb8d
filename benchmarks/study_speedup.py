"""Shared-prefix study evaluation vs the naive loop, side by side in one run.

    .venv/bin/python benchmarks/study_speedup.py [--images 500] [--checkpoint runs/.../last.pt]

Runs the full single+pair plan list (153 plans for ResNet-50) of the CIFAR ResNet-50 (width 16)
on the same batch of CIFAR-10 test images both ways, checks the counts are identical, and prints
both times and the speed-up. Target: >= 1.8x.
"""

from __future__ import annotations

import argparse
import time

import torch

from adaptive_resnet.data import batches, load_images
from adaptive_resnet.models import DroppableResNet
from adaptive_resnet.study import count_correct, count_correct_naive, study_plans
from adaptive_resnet.train import model_from_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--checkpoint", default=None, help="default: random weights (timing does not depend on them)")
    parser.add_argument("--data", default="../shared/data/cifar10")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.checkpoint:
        model, _ = model_from_checkpoint(args.checkpoint)
    else:
        torch.manual_seed(0)
        model = DroppableResNet("resnet50", num_classes=10, stem="cifar", base_channels=16).eval()
    data = load_images(args.data, "test", cache_dir="runs/cache").subset(args.images)
    x, y = next(batches(data, args.images))
    plans = study_plans(model.block_names)
    with torch.no_grad():
        count_correct(model, x[:8], y[:8], plans[:3])  # warm-up
        t0 = time.perf_counter()
        naive = count_correct_naive(model, x, y, plans)
        naive_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        shared = count_correct(model, x, y, plans)
        shared_s = time.perf_counter() - t0
    assert naive == shared, "shared evaluation disagrees with the naive loop"
    print(f"plans: {len(plans)}  images: {len(y)}  threads: {torch.get_num_threads()}")
    print(f"{'method':<8} {'time_s':>8} {'images*plans/s':>15}")
    print(f"{'naive':<8} {naive_s:>8.2f} {len(y) * len(plans) / naive_s:>15.0f}")
    print(f"{'shared':<8} {shared_s:>8.2f} {len(y) * len(plans) / shared_s:>15.0f}")
    print(f"speed-up: {naive_s / shared_s:.2f}x (target >= 1.8x); counts identical: {naive == shared}")


if __name__ == "__main__":
    main()
