"""``serve``: the cluster behind a small HTTP endpoint, requests gathered into time steps.

``POST /classify`` with an image file's bytes (PNG, JPEG, ...) answers JSON with the class, the
measured and predicted latency, the drops the plan used and whether a dead worker's shortcut
completed it. Requests that arrive within one time step (``step_s``) are planned and run
together, as the paper's time steps are; the controller re-plans at every step. ``GET /status``
reports the devices, the last plan's drop sets and the counts so far.

A bad image is a 400 with the reason; a request the cluster could not complete is a 503 with
the cluster's error. Every request gets exactly one answer.
"""

from __future__ import annotations

import io
import json
import queue
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from adaptive_resnet.errors import UserInputError


def decode_image(data: bytes, size: int) -> np.ndarray:
    """An uploaded image as uint8 (size, size, 3), or a UserInputError saying what is wrong."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            mode, shape = im.mode, im.size
            if mode != "RGB":
                raise UserInputError(f"image has mode {mode} ({len(im.getbands())} channels); the model takes RGB (3 channels)")
            if shape != (size, size):
                raise UserInputError(f"image is {shape[0]}x{shape[1]}; the model takes {size}x{size}")
            return np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as exc:
        raise UserInputError(f"cannot decode the image: {str(exc).splitlines()[0]}") from None


@dataclass
class _Pending:
    image: np.ndarray
    done: threading.Event = field(default_factory=threading.Event)
    answer: dict | None = None
    status: int = 200


class Server:
    """Gathers requests into steps and runs each step through ``controller``."""

    def __init__(self, controller, step_s: float = 0.2, max_batch: int = 64, classes: list[str] | None = None) -> None:
        self.controller = controller
        self.step_s, self.max_batch, self.classes = step_s, max_batch, classes
        self.input_size = controller.scenario.model.input_size
        self.queue: queue.Queue[_Pending] = queue.Queue()
        self.counts = {"answered": 0, "failed": 0, "shortcut": 0, "steps": 0}
        self.last_plan: dict | None = None
        self._stop = threading.Event()
        self._loop_thread = threading.Thread(target=self._loop, name="steps", daemon=True)
        self._loop_thread.start()

    def classify(self, data: bytes, timeout_s: float = 300.0) -> tuple[int, dict]:
        """(HTTP status, JSON answer) for one uploaded image; blocks until its step has run."""
        try:
            image = decode_image(data, self.input_size)
        except UserInputError as exc:
            return 400, {"error": str(exc)}
        item = _Pending(image)
        self.queue.put(item)
        if not item.done.wait(timeout_s):
            return 503, {"error": f"no answer within {timeout_s:.0f} s"}
        return item.status, item.answer

    def status(self) -> dict:
        alive = self.controller.cluster.alive
        drops = sorted({",".join(r.get("drops", [])) or "none" for r in (self.last_plan or {}).get("requests", [])})
        return {"devices": {name: ("alive" if ok else "dead") for name, ok in alive.items()}, "last_plan_drops": drops,
                "objective": (self.last_plan or {}).get("objective"), **self.counts}

    def close(self) -> None:
        self._stop.set()
        self._loop_thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                first = self.queue.get(timeout=0.1)
            except queue.Empty:
                continue
            batch = [first]
            deadline = time.perf_counter() + self.step_s
            while len(batch) < self.max_batch and (left := deadline - time.perf_counter()) > 0:
                try:
                    batch.append(self.queue.get(timeout=left))
                except queue.Empty:
                    break
            self._run_step(batch)

    def _run_step(self, batch: list[_Pending]) -> None:
        from adaptive_resnet.data import ImageSet, batches

        try:
            images = ImageSet(np.stack([p.image for p in batch]), np.zeros(len(batch), np.int64), [])
            x, _ = next(batches(images, len(batch)))
            outcomes, plan = self.controller.serve_step(x)
            self.last_plan = plan
            self.counts["steps"] += 1
        except Exception as exc:  # noqa: BLE001  (one bad step must answer its requests, not kill the server)
            for p in batch:
                p.status, p.answer = 503, {"error": f"{type(exc).__name__}: {exc}"}
                self.counts["failed"] += 1
                p.done.set()
            return
        for p, o in zip(batch, outcomes, strict=True):
            if o.logits is None:
                p.status, p.answer = 503, {"error": o.error or "not completed"}
                self.counts["failed"] += 1
            else:
                k = int(o.logits.argmax(1)[0])
                p.answer = {"class_index": k, "latency_s": o.latency_s, "predicted_latency_s": o.predicted_latency_s,
                            "drops": o.drops, "attempts": o.attempts, "shortcut": o.shortcut}
                if self.classes and k < len(self.classes):
                    p.answer["class"] = self.classes[k]
                self.counts["answered"] += 1
                self.counts["shortcut"] += o.shortcut
            p.done.set()


def http_server(server: Server, host: str = "127.0.0.1", port: int = 8080) -> ThreadingHTTPServer:
    """A threading HTTP server for ``server`` (port 0: any free port); call ``serve_forever``."""

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, status: int, doc: dict) -> None:
            body = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            if self.path != "/classify":
                return self._reply(404, {"error": f"unknown path {self.path}; POST /classify, GET /status"})
            length = int(self.headers.get("Content-Length") or 0)
            self._reply(*server.classify(self.rfile.read(length)))

        def do_GET(self) -> None:
            if self.path != "/status":
                return self._reply(404, {"error": f"unknown path {self.path}; POST /classify, GET /status"})
            self._reply(200, server.status())

        def log_message(self, *args) -> None:  # quiet: the CLI prints its own summary
            pass

    return ThreadingHTTPServer((host, port), Handler)
