"""``serve``: the cluster behind an HTTP endpoint (a small Starlette app on uvicorn).

``POST /classify`` with an image file's bytes (PNG, JPEG, ...) answers JSON with the class, the
measured and predicted latency, the drops the plan used and whether a dead worker's shortcut
completed it. Requests that arrive within one time step (``step_s``) are planned and run
together, as the paper's time steps are; the controller re-plans at every step, and each request
is answered as soon as it ends. ``GET /status`` reports the devices, the last plan's drop sets
and the counts so far; ``GET /`` is a live page of the cluster (each device with the blocks it
hosts, its state and battery, the blocks dropped this step, link rates, recent latency and
accuracy), refreshed every second from ``/status``; ``GET /metrics`` is the Prometheus
exposition (requests by outcome, a latency histogram, re-plans, per-device liveness, energy and
battery, dropped blocks).

Why uvicorn rather than Ray Serve: the device workers are Ray actors pinned to their nodes and
the controller plans a whole time step at once, so the front only has to gather a step's
requests, hand them to one controller and answer; Ray Serve's replicas, proxy actor and
controller actor would add three more processes (and their memory) on a 2-core edge gateway
for the same job. uvicorn parses HTTP (h11), applies the backlog and connection limits and
shuts down gracefully; no HTTP is parsed by hand here.

Every request ends with exactly one outcome (:class:`Pending.finish` takes the first and
ignores any later one): answered (200), refused for its input (400 bad image, 411/400 bad
length, 413 too large, 408 body too slow), shed (503 with ``Retry-After`` when the queue is
full), failed with a reason (503: no device alive, deadline, shutting down, the cluster's
error), or timed out (504, its request dropped if it had not run yet). A request whose client
went away before its step is dropped, not run.
"""

from __future__ import annotations

import asyncio
import io
import queue
import threading
import time
from collections import Counter

import numpy as np

from adaptive_resnet.errors import UserInputError
from adaptive_resnet.models.naming import DropPlan
from adaptive_resnet.planning.step_plan import StepPlan

MAX_BODY_BYTES = 8 << 20  # an image upload; larger declared or sent bodies are refused (413)
BODY_TIMEOUT_S = 30.0  # a client has this long to send its body (408 after)
DEFAULT_QUEUE = 256  # requests waiting for a step; beyond, 503 + Retry-After
DEFAULT_TIMEOUT_S = 300.0  # a request's answer is given up on after this (504)


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


class Pending:
    """One accepted request: its image, and its one outcome once it has one."""

    def __init__(self, image: np.ndarray, on_outcome=None) -> None:
        self.image = image
        self.status: int | None = None
        self.answer: dict | None = None
        self.cancelled = False  # timed out or its client left: not to be run
        self.done = threading.Event()
        self._lock = threading.Lock()
        self._on_outcome = on_outcome
        self._waiters: list = []

    def finish(self, status: int, answer: dict, reason: str, on_taken=None) -> bool:
        """Give the request its outcome, unless it has one already; returns whether it took.
        ``on_taken()`` runs when it does, before anyone waiting on the request is told (so that
        what it records is there when the client looks)."""
        with self._lock:
            if self.status is not None:
                return False
            self.status, self.answer = status, answer
            waiters, self._waiters = self._waiters, []
        if on_taken is not None:
            on_taken()
        if self._on_outcome is not None:
            self._on_outcome(reason)
        self.done.set()
        for notify in waiters:
            notify()
        return True

    def when_done(self, notify) -> None:
        """Call ``notify()`` once the request has its outcome (now, if it has)."""
        with self._lock:
            if self.status is None:
                self._waiters.append(notify)
                return
        notify()


class Server:
    """Gathers requests into steps and runs each step through ``controller``."""

    def __init__(self, controller, step_s: float = 0.2, max_batch: int = 64, classes: list[str] | None = None,
                 max_queue: int = DEFAULT_QUEUE, request_timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.controller = controller
        self.step_s, self.max_batch, self.classes = step_s, max_batch, classes
        self.request_timeout_s = request_timeout_s
        self.input_size = controller.scenario.model.input_size
        self.queue: queue.Queue[Pending] = queue.Queue(maxsize=max_queue)
        self.counts = {"answered": 0, "failed": 0, "shortcut": 0, "steps": 0}
        self.failed_by_reason: Counter[str] = Counter()
        self._counts_lock = threading.Lock()
        self.last_plan: StepPlan | None = None
        self.recent: list[tuple[float, float]] = []  # (latency_s, accuracy) of the last answered requests
        self.metrics = _Metrics()
        self.accepting = True
        self._stop = threading.Event()
        self._loop_thread = threading.Thread(target=self._loop, name="steps", daemon=True)
        self._loop_thread.start()

    # -- requests -----------------------------------------------------------------------------

    def submit(self, image: np.ndarray) -> Pending | None:
        """Queue one decoded image for the next step; None when the queue is full or the server
        is shutting down (the caller answers 503)."""
        if not self.accepting:
            return None
        pending = Pending(image, self._count)
        try:
            self.queue.put_nowait(pending)
        except queue.Full:
            return None
        return pending

    def _count(self, reason: str) -> None:
        with self._counts_lock:
            if reason in ("answered", "shortcut"):
                self.counts["answered"] += 1
                self.counts["shortcut"] += reason == "shortcut"
            else:
                self.counts["failed"] += 1
                self.failed_by_reason[reason] += 1
        self.metrics.requests.labels(outcome=reason).inc()

    def classify(self, data: bytes, timeout_s: float | None = None) -> tuple[int, dict]:
        """(HTTP status, JSON answer) for one uploaded image; blocks until it has its outcome."""
        try:
            image = decode_image(data, self.input_size)
        except UserInputError as exc:
            return 400, {"error": str(exc)}
        pending = self.submit(image)
        if pending is None:
            return self.shed_answer()
        if not pending.done.wait(self.request_timeout_s if timeout_s is None else timeout_s):
            self.give_up(pending)
        return pending.status, pending.answer

    def shed_answer(self) -> tuple[int, dict]:
        reason = "shutting down" if not self.accepting else f"overloaded: {self.queue.maxsize} requests are waiting"
        if self.accepting:
            self._count("shed")
        return 503, {"error": reason, "retry_after_s": max(1, round(self.step_s * 5))}

    def give_up(self, pending: Pending) -> None:
        """A request not answered in time: cancelled (dropped if it has not run) and answered 504."""
        pending.cancelled = True
        pending.finish(504, {"error": f"no answer within {self.request_timeout_s:.0f} s"}, "timeout")

    def status(self) -> dict:
        devices = self.controller.cluster.health.states()
        plan = getattr(self.controller, "current_plan", None) or self.last_plan or StepPlan.failed("no step yet")
        drops = sorted({",".join(d.entries()) or "none" for d in plan.dropped()})
        with self._counts_lock:
            counts = dict(self.counts)
            by_reason = dict(self.failed_by_reason)
            recent = list(self.recent)
        return {"devices": devices, "last_plan_drops": drops, "objective": plan.objective,
                **counts, "failed_by_reason": by_reason, "queued": self.queue.qsize(), "cluster": self.cluster_view(devices, recent, plan)}

    def cluster_view(self, states: dict[str, str], recent: list[tuple[float, float]], plan: StepPlan) -> dict:
        """What the live page shows: each device with the blocks it hosts this step, its state,
        battery and busy time; the blocks dropped this step; the link rates; recent latency
        and accuracy."""
        controller = self.controller
        problem = getattr(controller, "problem", None)
        hosted = plan.hosts()
        dropped = {entry for drops in plan.dropped() for entry in drops.entries()}
        spent = getattr(controller, "_spent", None)
        battery = getattr(controller, "battery", None)
        names = list(states)
        devices = []
        for k, name in enumerate(names):
            devices.append({"name": name, "state": states[name], "hosts": hosted.get(name, []),
                            "energy_spent_j": float(spent[k]) if spent is not None else None,
                            "battery_j": float(battery[k] - spent[k]) if battery is not None and spent is not None else None})
        links = None
        if problem is not None:
            rates = problem.rate_bps / 1e6
            links = {f"{a},{b}": float(rates[i, j]) for i, a in enumerate(names) for j, b in enumerate(names) if i < j}
        latencies = [lat for lat, _ in recent]
        accuracies = [acc for _, acc in recent if acc is not None]
        return {"devices": devices, "dropped": sorted(dropped), "links_mbps": links,
                "recent": {"requests": len(recent), "latency_s_p50": float(np.median(latencies)) if latencies else None,
                           "accuracy_mean": float(np.mean(accuracies)) if accuracies else None},
                "steps": self.counts["steps"]}

    def _accuracy(self, drops: DropPlan) -> float | None:
        """g(y) of a drop set, from the accuracy source the planner counted on (measured, or
        its estimate: a shortcut or downsizing may run a set that is no candidate at the
        threshold); one dictionary lookup per answered request."""
        problem = getattr(self.controller, "problem", None)
        found = None if problem is None else problem.table.accuracy(drops)
        return None if found is None else found.value

    def metrics_text(self) -> bytes:
        """The Prometheus exposition of the counters and of the cluster's gauges, now."""
        view = self.status()["cluster"]
        m = self.metrics
        for device in view["devices"]:
            m.alive.labels(device=device["name"]).set(device["state"] == "alive")
            if device["energy_spent_j"] is not None:
                m.energy.labels(device=device["name"]).set(device["energy_spent_j"])
            if device["battery_j"] is not None:
                m.battery.labels(device=device["name"]).set(device["battery_j"])
        m.dropped.set(len(view["dropped"]))
        m.replans.set(getattr(self.controller, "replans", 0))
        from prometheus_client import generate_latest

        return generate_latest(m.registry)

    # -- the step loop ------------------------------------------------------------------------

    def close(self, grace_s: float = 10.0) -> None:
        """Stop accepting, let queued and in-flight requests finish for up to ``grace_s``, then
        fail the rest ("shutting down"); every request has its outcome when this returns."""
        self.accepting = False
        deadline = time.monotonic() + grace_s
        while not self.queue.empty() and time.monotonic() < deadline and self._loop_thread.is_alive():
            time.sleep(0.05)
        self._stop.set()
        self._loop_thread.join(timeout=max(deadline - time.monotonic(), 0.0) + 1.0)
        while True:
            try:
                pending = self.queue.get_nowait()
            except queue.Empty:
                break
            pending.finish(503, {"error": "shutting down"}, "shutting down")

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
            # Requests given up on (timed out, client gone) are dropped before they run.
            live = [p for p in batch if not p.cancelled and p.status is None]
            for p in batch:
                if p not in live:
                    p.finish(499, {"error": "cancelled before it ran"}, "cancelled")
            if live:
                self._run_step(live)

    def _run_step(self, batch: list[Pending]) -> None:
        from adaptive_resnet.data import ImageSet, batches

        def done(outcome) -> None:
            p = batch[outcome.index]
            if outcome.logits is None:
                error = outcome.error or "not completed"
                p.finish(503, {"error": error}, _reason(error))
                return
            k = int(outcome.logits.argmax(1)[0])
            answer = {"class_index": k, "latency_s": outcome.latency_s, "predicted_latency_s": outcome.predicted_latency_s,
                      "drops": outcome.drops.entries(), "attempts": outcome.attempts, "shortcut": outcome.shortcut}
            if self.classes and k < len(self.classes):
                answer["class"] = self.classes[k]
            def record() -> None:
                self.metrics.latency.observe(outcome.latency_s)
                with self._counts_lock:
                    self.recent = (self.recent + [(outcome.latency_s, self._accuracy(outcome.drops))])[-100:]

            p.finish(200, answer, "shortcut" if outcome.shortcut else "answered", on_taken=record)

        with self._counts_lock:
            self.counts["steps"] += 1  # counted as it starts: its requests are answered before it returns
        try:
            images = ImageSet(np.stack([p.image for p in batch]), np.zeros(len(batch), np.int64), [])
            x, _ = next(batches(images, len(batch)))
            _, plan = self.controller.serve_step(x, on_done=done)
            self.last_plan = plan
        except Exception as exc:  # noqa: BLE001  (one bad step must answer its requests, not kill the server)
            for p in batch:  # those answered already keep their answers (finish takes the first outcome)
                p.finish(503, {"error": f"{type(exc).__name__}: {exc}"}, "step failed")


def _reason(error: str) -> str:
    """The kind of a failure, for the counts: the text before its first colon."""
    return error.split(":")[0].strip() or "failed"


class _Metrics:
    """Prometheus metrics of one server, in a registry of its own (so that servers in one
    process, as in tests, do not collide)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("adaptive_resnet_requests", "Requests by outcome", ["outcome"], registry=self.registry)
        self.latency = Histogram("adaptive_resnet_request_latency_seconds", "Latency of answered requests (every attempt)",
                                 buckets=(0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30), registry=self.registry)
        self.replans = Gauge("adaptive_resnet_replans", "Plans made so far (one a step, one per re-plan)", registry=self.registry)
        self.alive = Gauge("adaptive_resnet_device_alive", "1 when the device's worker answers", ["device"], registry=self.registry)
        self.energy = Gauge("adaptive_resnet_device_energy_spent_joules", "Energy charged to the device (Eq. 19)", ["device"],
                            registry=self.registry)
        self.battery = Gauge("adaptive_resnet_device_battery_joules", "Energy left on the device", ["device"], registry=self.registry)
        self.dropped = Gauge("adaptive_resnet_dropped_blocks", "Blocks dropped by the current step's plan", registry=self.registry)


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>adaptive-resnet cluster</title>
<style>body{font:14px system-ui,sans-serif;margin:1.5em}table{border-collapse:collapse}td,th{border:1px solid #ccc;
padding:4px 8px;text-align:left}.alive{color:#070}.suspected{color:#b60}.dead{color:#b00}</style></head>
<body><h1>adaptive-resnet cluster</h1>
<p id="summary">loading...</p>
<table id="devices"><thead><tr><th>device</th><th>state</th><th>blocks hosted</th><th>battery J</th><th>energy spent J</th></tr>
</thead><tbody></tbody></table>
<p>dropped this step: <span id="dropped"></span></p><p>links (Mb/s): <span id="links"></span></p>
<script>
async function refresh() {
  const s = await (await fetch('/status')).json();
  const c = s.cluster;
  document.getElementById('summary').textContent = `step ${c.steps}: answered ${s.answered}, failed ${s.failed}, ` +
    `queued ${s.queued}; recent latency p50 ${c.recent.latency_s_p50 === null ? '-' : c.recent.latency_s_p50.toFixed(3)} s, ` +
    `accuracy ${c.recent.accuracy_mean === null ? '-' : (100 * c.recent.accuracy_mean).toFixed(2)} %`;
  const rows = c.devices.map(d => `<tr id="device-${d.name}"><td>${d.name}</td><td class="${d.state}">${d.state}</td>` +
    `<td>${d.hosts.join(' ') || '-'}</td><td>${d.battery_j === null ? '-' : d.battery_j.toFixed(1)}</td>` +
    `<td>${d.energy_spent_j === null ? '-' : d.energy_spent_j.toFixed(2)}</td></tr>`);
  document.querySelector('#devices tbody').innerHTML = rows.join('');
  document.getElementById('dropped').textContent = c.dropped.join(', ') || 'none';
  document.getElementById('links').textContent = c.links_mbps ? Object.entries(c.links_mbps).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', ') : '-';
}
refresh(); setInterval(refresh, 1000);
</script></body></html>
"""


# -- HTTP ---------------------------------------------------------------------------------------


def app(server: Server):
    """The ASGI application of ``server``: ``POST /classify`` and ``GET /status``."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    def reply(status: int, doc: dict) -> JSONResponse:
        headers = {"Retry-After": str(doc["retry_after_s"])} if "retry_after_s" in doc else None
        return JSONResponse(doc, status_code=status, headers=headers)

    async def read_body(request: Request) -> bytes | JSONResponse:
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                return reply(400, {"error": f"Content-Length must be a non-negative integer, got {declared!r}"})
            if int(declared) > MAX_BODY_BYTES:
                return reply(413, {"error": f"body of {int(declared)} bytes; at most {MAX_BODY_BYTES} are taken"})
        body = bytearray()

        async def collect() -> bool:
            async for chunk in request.stream():
                body.extend(chunk)
                if len(body) > MAX_BODY_BYTES:
                    return False
            return True

        try:
            if not await asyncio.wait_for(collect(), BODY_TIMEOUT_S):
                return reply(413, {"error": f"body over {MAX_BODY_BYTES} bytes"})
        except asyncio.TimeoutError:
            return reply(408, {"error": f"the body did not arrive within {BODY_TIMEOUT_S:.0f} s"})
        except ClientDisconnect:
            return reply(400, {"error": "the client closed the connection before sending its body"})
        return bytes(body)

    async def classify(request: Request) -> JSONResponse:
        body = await read_body(request)
        if isinstance(body, JSONResponse):
            return body
        try:
            image = decode_image(body, server.input_size)
        except UserInputError as exc:
            return reply(400, {"error": str(exc)})
        pending = server.submit(image)
        if pending is None:
            return reply(*server.shed_answer())
        loop = asyncio.get_running_loop()
        answered = loop.create_future()
        pending.when_done(lambda: loop.call_soon_threadsafe(lambda: answered.done() or answered.set_result(None)))

        async def client_gone() -> None:
            while True:
                message = await request.receive()
                if message["type"] == "http.disconnect":
                    return

        gone = asyncio.ensure_future(client_gone())
        try:
            finished, _ = await asyncio.wait({answered, gone}, timeout=server.request_timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if answered not in finished:
            if gone in finished:
                pending.cancelled = True
                pending.finish(499, {"error": "the client went away"}, "client gone")
            else:
                server.give_up(pending)
        return reply(pending.status, pending.answer)

    async def status(request: Request) -> JSONResponse:
        return reply(200, server.status())

    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(PAGE)

    async def metrics(request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(server.metrics_text(), media_type=CONTENT_TYPE_LATEST)

    async def not_found(request: Request, exc: HTTPException) -> JSONResponse:
        return reply(exc.status_code, {"error": f"{exc.detail}: {request.method} {request.url.path}; POST /classify, GET /status"})

    return Starlette(routes=[Route("/classify", classify, methods=["POST"]), Route("/status", status, methods=["GET"]),
                             Route("/", page, methods=["GET"]), Route("/metrics", metrics, methods=["GET"])],
                     exception_handlers={HTTPException: not_found})


def bind(host: str, port: int, backlog: int = 2048):
    """A listening socket on ``host:port`` (0: a free port), with a backlog for bursts."""
    import socket

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UserInputError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def http_server(server: Server, sock, grace_s: float = 10.0):
    """A uvicorn server for ``server`` on the bound ``sock``; ``run()`` it (it stops on SIGINT or
    ``should_exit``, letting in-flight requests finish for up to ``grace_s``)."""
    import uvicorn

    config = uvicorn.Config(app(server), log_level="warning", lifespan="off", timeout_graceful_shutdown=grace_s,
                            limit_concurrency=server.queue.maxsize + 256, timeout_keep_alive=5)
    web = uvicorn.Server(config)
    web.sockets = [sock]
    return web


def serve_in_thread(server: Server, host: str = "127.0.0.1", port: int = 0):
    """Start serving ``server`` on a thread (tests, notebooks); returns (url, stop)."""
    import asyncio as _asyncio

    sock = bind(host, port)
    web = http_server(server, sock)
    thread = threading.Thread(target=lambda: _asyncio.run(web.serve(sockets=[sock])), daemon=True)
    thread.start()
    while not web.started and thread.is_alive():
        time.sleep(0.02)

    def stop() -> None:
        web.should_exit = True
        thread.join(timeout=30)
        sock.close()

    return f"http://{host}:{sock.getsockname()[1]}", stop


__all__ = ["Pending", "Server", "app", "bind", "decode_image", "http_server", "serve_in_thread"]
