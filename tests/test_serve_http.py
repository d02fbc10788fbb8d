"""The HTTP front as a client meets it: malformed requests, overload, timeouts, shutdown.

The step loop runs against a stand-in controller (answers after a set delay, or never), so
these tests need no Ray and count exactly what each client got. Every test prints sent /
answered / failed by reason / lost.
"""

from __future__ import annotations

import http.client
import io
import json
import socket
import threading
import time
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from adaptive_resnet.planning.step_plan import StepPlan
from adaptive_resnet.runtime.chains import Outcome
from adaptive_resnet.runtime.server import MAX_BODY_BYTES, Server, serve_in_thread


class StandIn:
    """A controller whose steps take ``step_s`` and answer class 7 (``hang``: until released)."""

    def __init__(self, step_s: float = 0.05, hang: bool = False, devices: tuple[str, ...] = ("a",)) -> None:
        self.scenario = SimpleNamespace(model=SimpleNamespace(input_size=8))
        self.cluster = SimpleNamespace(health=SimpleNamespace(states=lambda: dict.fromkeys(devices, "alive")))
        self.step_s, self.release, self.ran = step_s, threading.Event(), []
        if not hang:
            self.release.set()

    def serve_step(self, images, on_done=None):
        self.ran.append(len(images))
        time.sleep(self.step_s)
        self.release.wait()
        outcomes = []
        for i in range(len(images)):
            logits = torch.zeros(1, 10)
            logits[0, 7] = 1.0
            outcomes.append(Outcome(i, logits=logits, latency_s=self.step_s))
            if on_done:
                on_done(outcomes[-1])
        return outcomes, StepPlan((), True, 0.0)


def png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def raw(url: str, request: bytes, timeout: float = 30.0) -> tuple[int, dict, dict]:
    """Send ``request`` bytes as they are; (status, headers, JSON body) of the reply."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(request)
        response = http.client.HTTPResponse(sock)
        response.begin()
        body = response.read()
        return response.status, dict(response.getheaders()), (json.loads(body) if body.startswith(b"{") else {"raw": body.decode()})


def post(url: str, data: bytes, timeout: float = 60.0) -> tuple[int, dict, dict]:
    head = f"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
    return raw(url, head + data, timeout)


@pytest.fixture()
def serving():
    started = []

    def start(controller, **options):
        server = Server(controller, step_s=0.05, **options)
        url, stop = serve_in_thread(server)
        started.append((server, stop))
        return server, url

    yield start
    for server, stop in started:
        stop()
        server.close(grace_s=1.0)


def test_malformed_and_oversized_requests_get_4xx_with_a_reason(serving):
    server, url = serving(StandIn())
    cases = [
        (b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400),
        (b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", 400),
        (f"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Length: {5 << 30}\r\n\r\nabc".encode(), 413),  # 5 GB declared
        (f"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Length: {MAX_BODY_BYTES + 1}\r\n\r\n".encode(), 413),
        (b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\nnot an image", 400),
        (b"GET /classify HTTP/1.1\r\nHost: x\r\n\r\n", 405),
        (b"POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 404),
    ]
    got = Counter()
    for request, expected in cases:
        status, _, doc = raw(url, request)
        got[status] += 1
        assert status == expected, (request[:60], status, doc)
        assert doc.get("error") or doc.get("raw"), doc
    status, _, doc = post(url, png())  # the server still answers well-formed requests
    assert status == 200 and doc["class_index"] == 7
    print(f"malformed: sent {len(cases) + 1}, answered 1, refused {dict(got)}, lost 0")
    assert server.status()["answered"] == 1


def test_overload_beyond_the_queue_is_shed_with_retry_after_and_nothing_else_changes(serving):
    controller = StandIn(hang=True)
    server, url = serving(controller, max_queue=4, max_batch=1)  # the hung step holds one; 4 may wait
    results: list[tuple[int, dict, dict]] = []
    lock = threading.Lock()

    def client():
        reply = post(url, png(), timeout=120)
        with lock:
            results.append(reply)

    threads = [threading.Thread(target=client) for _ in range(30)]
    for t in threads:
        t.start()
    for _ in range(600):  # until every client has been shed or queued
        with lock:
            shed = sum(r[0] == 503 for r in results)
        if shed + server.queue.qsize() + sum(controller.ran) >= 30:
            break
        time.sleep(0.05)
    controller.release.set()
    for t in threads:
        t.join(timeout=120)
    statuses = Counter(r[0] for r in results)
    assert len(results) == 30 and set(statuses) <= {200, 503}
    assert statuses[503] > 0 and statuses[200] == sum(controller.ran)
    assert all(r[1].get("retry-after") or r[1].get("Retry-After") for r in results if r[0] == 503)
    status = server.status()
    assert status["answered"] == statuses[200] and status["failed_by_reason"].get("shed") == statuses[503]
    print(f"overload: sent 30, answered {statuses[200]}, failed {{'shed': {statuses[503]}}}, lost {30 - len(results)}")


def test_a_timed_out_request_is_never_run_later_and_has_one_outcome(serving):
    controller = StandIn(hang=True)
    server, url = serving(controller, request_timeout_s=0.5)
    replies = []
    first = threading.Thread(target=lambda: replies.append(post(url, png())))  # its step hangs
    first.start()
    while not controller.ran:
        time.sleep(0.01)
    status, _, doc = post(url, png())  # queued behind the hung step, given up on after 0.5 s
    assert status == 504 and "no answer within" in doc["error"]
    first.join(timeout=30)
    assert replies[0][0] == 504  # the running one too
    controller.release.set()  # the hung step ends: its late answer is not a second outcome
    for _ in range(100):
        if server.queue.empty() and len(controller.ran) == 1:
            break
        time.sleep(0.05)
    time.sleep(0.3)  # the loop has taken the timed-out request from the queue (and dropped it)
    assert server.queue.empty() and controller.ran == [1]  # the queued one never ran
    counts = server.status()
    assert counts["answered"] == 0 and counts["failed_by_reason"] == {"timeout": 2}
    print(f"timeout: sent 2, answered 0, failed {counts['failed_by_reason']}, lost 0")


def test_shutdown_under_load_counts_every_outcome(serving):
    controller = StandIn(hang=True)
    server, url = serving(controller)
    replies: list[int] = []
    threads = [threading.Thread(target=lambda: replies.append(post(url, png())[0])) for _ in range(6)]
    for t in threads:
        t.start()
    while server.queue.qsize() + sum(controller.ran) < 6:
        time.sleep(0.01)
    closer = threading.Thread(target=server.close, kwargs={"grace_s": 0.5})
    closer.start()
    time.sleep(0.1)
    assert post(url, png())[0] == 503  # no longer accepting
    controller.release.set()
    closer.join(timeout=30)
    for t in threads:
        t.join(timeout=30)
    counts = server.status()
    assert len(replies) == 6 and counts["answered"] + counts["failed"] - counts["failed_by_reason"].get("shed", 0) == 6
    assert Counter(replies)[200] == counts["answered"]
    print(f"shutdown: sent 6 (+1 after), answered {counts['answered']}, failed {counts['failed_by_reason']}, lost 0")


def test_the_live_page_and_the_metrics(serving):
    server, url = serving(StandIn())
    assert post(url, png())[0] == 200
    status, headers, doc = raw(url, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status == 200 and 'id="devices"' in doc["raw"] and "fetch('/status')" in doc["raw"]
    status, headers, doc = raw(url, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    text = doc["raw"]
    assert status == 200 and 'adaptive_resnet_requests_total{outcome="answered"} 1.0' in text
    assert "adaptive_resnet_request_latency_seconds_count 1.0" in text
    assert 'adaptive_resnet_device_alive{device="a"} 1.0' in text
    view = server.status()["cluster"]
    assert [d["name"] for d in view["devices"]] == ["a"] and view["recent"]["requests"] == 1
