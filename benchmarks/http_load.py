"""The HTTP load both serving benchmarks send (``serve.py``, ``serve_stack.py``): random PNGs
posted by client threads, a new connection each, the way independent users arrive."""

from __future__ import annotations

import io
import threading
import time
import urllib.error
import urllib.request

import numpy as np
from PIL import Image


def png(rng: np.random.Generator, size: int = 16) -> bytes:
    """A random ``size`` x ``size`` RGB image as PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def load(url: str, bodies: list[bytes], clients: int, timeout_s: float = 300.0) -> tuple[float, list[float], dict[int, int]]:
    """(wall seconds, latency of each answered (200) request, count by HTTP status; 0: no HTTP
    answer at all) for ``bodies`` POSTed to ``url`` by ``clients`` threads."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    work = list(bodies)

    def client() -> None:
        while True:
            with lock:
                if not work:
                    return
                body = work.pop()
            t0 = time.perf_counter()
            try:
                with urllib.request.urlopen(urllib.request.Request(url, data=body, method="POST"), timeout=timeout_s) as r:
                    r.read()
                    status = r.status
            except urllib.error.HTTPError as err:
                err.read()
                status = err.code
            except OSError:
                status = 0  # reset, refused, timed out
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
                if status == 200:
                    latencies.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, latencies, statuses
