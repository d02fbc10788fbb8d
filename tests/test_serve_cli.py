"""``adaptive-resnet serve`` as a user starts it: a process serving HTTP until Ctrl-C."""

from __future__ import annotations

import contextlib
import io
import json
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
import pytest
import yaml
from PIL import Image

pytestmark = pytest.mark.ray

# Two fast devices; the image size and classes of ``tiny_checkpoint``.
SCENARIO = {
    "model": {"arch": "resnet50", "input_size": 16, "num_classes": 10, "stem": "cifar", "base_channels": 4},
    "accuracy": "paper", "accuracy_threshold": 0.5, "requests": 2, "rates_mbps": {"default": 50},
    "devices": [{"name": name, "memory_mb": 5, "speed_gmacs": 1000, "compute_limit_gmac": 1000, "energy_j": 1000} for name in "ab"],
}


def test_serve_command_answers_over_http_and_stops_cleanly_on_ctrl_c(tmp_path, tiny_checkpoint):
    (tmp_path / "scenario.yaml").write_text(yaml.safe_dump(SCENARIO))
    (tmp_path / "trace.csv").write_text("round,a,b,rate_mbps\n1,a,b,20\n2,a,b,40\n")
    proc = subprocess.Popen([sys.executable, "-m", "adaptive_resnet.cli", "serve", str(tmp_path / "scenario.yaml"),
                             "--checkpoint", str(tiny_checkpoint), "--port", "0", "--step-s", "0.1",
                             "--rate-trace", str(tmp_path / "trace.csv"), "--time-dilation", "auto"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # Read its output on a thread: Ray's own processes hold the pipe open, so a read could
        # wait for ever if the command died.
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
        said, url = [], None
        deadline = time.monotonic() + 180
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(queue.Empty):
                said.append(lines.get(timeout=1))
                url = re.search(r"^serving .* at (http://[\d.]+:\d+)", said[-1])
        assert url, "no serving line; the process said:\n" + "".join(said)
        assert any(line.startswith("time dilation auto: x1 measured/predicted") for line in said), said
        png = io.BytesIO()
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(png, format="PNG")
        answers = []
        for _ in range(3):  # three time steps: the trace's two rounds, then its first again
            request = urllib.request.Request(url.group(1) + "/classify", data=png.getvalue(), method="POST")
            with urllib.request.urlopen(request, timeout=120) as reply:
                answers.append(json.loads(reply.read()))
        assert all(0 <= a["class_index"] < 10 for a in answers)
        with urllib.request.urlopen(url.group(1) + "/status", timeout=60) as reply:
            status = json.loads(reply.read())
        assert status["answered"] == 3 and status["failed"] == 0
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 0
        time.sleep(0.5)  # the last lines reach the reader
        out = "".join(said) + "".join(lines.queue)
        assert "answered 3, failed 0" in out, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
