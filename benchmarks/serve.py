"""The HTTP front of ``serve``, before and after the move to uvicorn, side by side in one run.

A real controller and Ray cluster (a width-4 CIFAR ResNet-50 on three emulated-off workers,
16x16 images) serves N requests from 1, 8 and 32 concurrent clients through each front: the old
``http.server`` one (read from git at the commit before the change) and the new uvicorn one.
Printed per front and concurrency: requests per second, p50/p95/p99 latency, and the serving
overhead per request against calling the controller directly with the same batch sizes.

    .venv/bin/python benchmarks/serve.py [--requests 64] [--before 9adcd69]
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from http_load import load, png

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = """
model: {arch: resnet50, input_size: 16, num_classes: 10, stem: cifar, base_channels: 4}
accuracy: paper
accuracy_threshold: 0.5
requests: 4
devices:
  - {name: a, memory_mb: 5, speed_gmacs: 1000, compute_limit_gmac: 1000, energy_j: 100000}
  - {name: b, memory_mb: 5, speed_gmacs: 1000, compute_limit_gmac: 1000, energy_j: 100000}
  - {name: c, memory_mb: 5, speed_gmacs: 1000, compute_limit_gmac: 1000, energy_j: 100000}
rates_mbps: {default: 1000}
"""


def old_front(commit: str):
    """The server module as it was at ``commit``."""
    source = subprocess.run(["git", "show", f"{commit}:src/adaptive_resnet/runtime/server.py"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout
    path = Path(tempfile.mkdtemp()) / "old_server.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("old_server", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_server"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


class AsBefore:
    """The controller as the old front knew it: plans as JSON-like documents, drops as strings."""

    def __init__(self, controller) -> None:
        self.controller = controller
        self.scenario, self.cluster = controller.scenario, controller.cluster

    def serve_step(self, images, on_done=None):
        outcomes, plan = self.controller.serve_step(images)
        for o in outcomes:
            o.drops = o.drops.entries()
        return outcomes, {"requests": [{"drops": r.drops.entries()} for r in plan.requests], "objective": plan.objective}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--before", default="9adcd69", help="commit whose runtime/server.py is the 'before' front")
    args = parser.parse_args()

    from adaptive_resnet.data import ImageSet, batches
    from adaptive_resnet.planning import Problem
    from adaptive_resnet.runtime import server as new
    from adaptive_resnet.runtime.controller import Controller
    from adaptive_resnet.system import parse_scenario
    from adaptive_resnet.train import TrainConfig, build_model

    work = Path(tempfile.mkdtemp())
    config = TrainConfig(data=".", arch="resnet50", stem="cifar", base_channels=4, num_classes=10)
    torch.save({"model": build_model(config).state_dict(), "config": config.model_dump()}, work / "ckpt.pt")
    controller = Controller(Problem(parse_scenario(SCENARIO)), str(work / "ckpt.pt"), "fast", emulate_links=False)
    old = old_front(args.before)
    rng = np.random.default_rng(0)
    bodies = [png(rng) for _ in range(args.requests)]
    rows = []
    try:
        for clients in (1, 8, 32):
            images = np.stack([np.asarray(Image.open(io.BytesIO(b))) for b in bodies[:clients]])
            x, _ = next(batches(ImageSet(images, np.zeros(len(images), np.int64), []), len(images)))
            controller.serve_step(x)  # warm
            t0 = time.perf_counter()
            repeats = max(1, args.requests // clients)
            for _ in range(repeats):
                controller.serve_step(x)
            direct_s = (time.perf_counter() - t0) / repeats  # one step of `clients` requests, no HTTP
            for name in ("before", "after"):
                if name == "before":
                    server = old.Server(AsBefore(controller), step_s=0.05)
                    httpd = old.http_server(server, "127.0.0.1", 0)
                    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
                    thread.start()
                    url = f"http://127.0.0.1:{httpd.server_address[1]}"
                    stop = lambda: (httpd.shutdown(), httpd.server_close())
                else:
                    server = new.Server(controller, step_s=0.05)
                    url, stop = new.serve_in_thread(server)
                try:
                    load(url + "/classify", bodies[:clients], clients)  # warm
                    wall, lat, statuses = load(url + "/classify", bodies, clients)
                    failed = sum(statuses.values()) - statuses.get(200, 0)
                finally:
                    stop()
                    server.close()
                lat_ms = np.array(lat) * 1e3
                p50, p95, p99 = np.percentile(lat_ms, [50, 95, 99]) if len(lat_ms) else (np.nan,) * 3
                rows.append((name, clients, len(lat) / wall, p50, p95, p99, p50 - direct_s * 1e3, failed))
                print(f"{name:<6} clients {clients:>2}: {len(lat) / wall:6.1f} req/s  p50 {p50:7.1f} ms  p95 {p95:7.1f} ms  "
                      f"p99 {p99:7.1f} ms  direct step {direct_s * 1e3:6.1f} ms  overhead (p50 - direct) {p50 - direct_s * 1e3:6.1f} ms"
                      f"  failed {failed}", flush=True)
    finally:
        controller.shutdown()
    print("\nclients | req/s before | req/s after | ratio | p50 before | p50 after | p99 before | p99 after (ms)")
    for clients in (1, 8, 32):
        b = next(r for r in rows if r[0] == "before" and r[1] == clients)
        a = next(r for r in rows if r[0] == "after" and r[1] == clients)
        print(f"{clients:>7} | {b[2]:12.1f} | {a[2]:11.1f} | {a[2] / b[2]:5.2f} | {b[3]:10.1f} | {a[3]:9.1f} | {b[5]:10.1f} | {a[5]:9.1f}")


if __name__ == "__main__":
    sys.exit(main())
