"""``adaptive-resnet serve`` as a user starts it: a process serving HTTP until Ctrl-C."""

from __future__ import annotations

import io
import json
import re
import signal
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
import torch
from PIL import Image

from adaptive_resnet.train import TrainConfig, build_model

pytestmark = pytest.mark.ray

SCENARIO = """
model: {arch: resnet50, input_size: 16, num_classes: 10, stem: cifar, base_channels: 4}
accuracy: paper
accuracy_threshold: 0.5
requests: 2
devices:
  - {name: a, memory_mb: 5, speed_gmacs: 1000, compute_limit_gmac: 1000, energy_j: 1000}
  - {name: b, memory_mb: 5, speed_gmacs: 1000, compute_limit_gmac: 1000, energy_j: 1000}
rates_mbps: {default: 50}
"""


def test_serve_command_answers_over_http_and_stops_cleanly_on_ctrl_c(tmp_path):
    config = TrainConfig(data=".", arch="resnet50", stem="cifar", base_channels=4, num_classes=10)
    torch.manual_seed(0)
    torch.save({"model": build_model(config).state_dict(), "config": config.model_dump()}, tmp_path / "ckpt.pt")
    (tmp_path / "scenario.yaml").write_text(SCENARIO)
    (tmp_path / "trace.csv").write_text("round,a,b,rate_mbps\n1,a,b,20\n2,a,b,40\n")
    proc = subprocess.Popen([sys.executable, "-m", "adaptive_resnet.cli", "serve", str(tmp_path / "scenario.yaml"),
                             "--checkpoint", str(tmp_path / "ckpt.pt"), "--port", "0", "--step-s", "0.1",
                             "--rate-trace", str(tmp_path / "trace.csv")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        said = []
        deadline = time.monotonic() + 180
        while not (said and "serving" in said[-1]) and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
            said.append(line)
        url = re.search(r"http://[\d.]+:\d+", said[-1] if said else "")
        assert url, "no serving line; the process said:\n" + "".join(said)
        png = io.BytesIO()
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(png, format="PNG")
        answers = []
        for _ in range(3):  # three time steps: the trace's two rounds, then its first again
            request = urllib.request.Request(url.group() + "/classify", data=png.getvalue(), method="POST")
            with urllib.request.urlopen(request, timeout=120) as reply:
                answers.append(json.loads(reply.read()))
        assert all(0 <= a["class_index"] < 10 for a in answers)
        with urllib.request.urlopen(url.group() + "/status", timeout=60) as reply:
            status = json.loads(reply.read())
        assert status["answered"] == 3 and status["failed"] == 0
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out
        assert "answered 3, failed 0" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
