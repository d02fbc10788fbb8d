"""Which HTTP front: Ray Serve against the uvicorn + Starlette front ``serve`` uses, side by side.

Both fronts run the same job with the same stand-in for the cluster (decode the PNG, gather the
requests of a ``--step-s`` window into one batch, answer each at once), so what is measured is
the serving stack alone: requests per second and p50/p99 latency at 1, 8 and 32 concurrent
clients, the processes and resident memory each front adds to the machine, its start-up time,
and, for our front, resident memory through a sustained overload (far more requests than its
queue holds: it must stay flat, the excess shed with 503).

Ray Serve's front is the natural one for a Ray runtime (``@serve.batch`` gathers a step,
``max_ongoing_requests``/``max_queued_requests`` give backpressure), and it needs
``pip install "ray[serve]"`` (not a dependency of the package; this benchmark skips it without).

    .venv/bin/python benchmarks/serve_stack.py [--requests 400] [--step-s 0.02]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from http_load import load, png

SIZE = 16
PORT = 18231


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def processes() -> dict[int, str]:
    """pid -> command line of every process on the machine."""
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                out[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                continue
    return out


class Instant:
    """The stand-in for the controller: a step answers class 7 for each request at once."""

    def __init__(self) -> None:
        self.scenario = SimpleNamespace(model=SimpleNamespace(input_size=SIZE))
        self.cluster = SimpleNamespace(health=SimpleNamespace(states=lambda: {"a": "alive"}))

    def serve_step(self, images, on_done=None):
        import torch

        from adaptive_resnet.planning.step_plan import StepPlan
        from adaptive_resnet.runtime.chains import Outcome

        outcomes = []
        for i in range(len(images)):
            logits = torch.zeros(1, 10)
            logits[0, 7] = 1.0
            outcomes.append(Outcome(i, logits=logits))
            if on_done:
                on_done(outcomes[-1])
        return outcomes, StepPlan((), True, 0.0)


class SlowStep(Instant):
    """A step that takes ``seconds``: requests pile up behind it (the overload phase)."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def serve_step(self, images, on_done=None):
        time.sleep(self.seconds)
        return super().serve_step(images, on_done)


def measure(name: str, url: str, bodies: list[bytes], rows: list) -> None:
    load(url, bodies[:32], 8, timeout_s=120)  # warm
    for clients in (1, 8, 32):
        wall, lat, statuses = load(url, bodies, clients, timeout_s=120)
        ms = np.array(lat) * 1e3
        p50, p99 = np.percentile(ms, [50, 99]) if len(ms) else (np.nan, np.nan)
        rows.append((name, clients, len(lat) / wall, p50, p99, sum(v for k, v in statuses.items() if k != 200)))
        print(f"{name:<10} clients {clients:>2}: {len(lat) / wall:7.1f} req/s  p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  "
              f"not answered {rows[-1][5]}", flush=True)


def ours(bodies: list[bytes], step_s: float, rows: list) -> dict:
    from adaptive_resnet.runtime.server import Server, serve_in_thread

    t0 = time.perf_counter()
    server = Server(Instant(), step_s=step_s)
    url, stop = serve_in_thread(server)
    start_s = time.perf_counter() - t0
    try:
        measure("uvicorn", url + "/classify", bodies, rows)
    finally:
        stop()
        server.close()
    return {"processes": 0, "rss_mb": 0.0, "start_s": start_s}  # it runs in the controller's process


def overload(bodies: list[bytes], rounds: int) -> list[tuple[int, float, dict]]:
    """Our front's resident memory through ``rounds`` of 128 clients sending ``bodies`` against
    steps of 0.5 s taking 16 requests each and a queue of 32, so most are shed: (requests sent so
    far, RSS MB, statuses of the round)."""
    from adaptive_resnet.runtime.server import Server, serve_in_thread

    server = Server(SlowStep(0.5), step_s=0.02, max_queue=32, max_batch=16)
    url, stop = serve_in_thread(server)
    out = []
    try:
        sent = 0
        for _ in range(rounds):
            _, _, statuses = load(url + "/classify", bodies, 128, timeout_s=120)
            sent += len(bodies)
            out.append((sent, rss_mb(os.getpid()), statuses))
            print(f"overload: sent {sent:>5}, RSS {out[-1][1]:6.1f} MB, statuses {dict(sorted(statuses.items()))}", flush=True)
    finally:
        stop()
        server.close()
    return out


def ray_serve(bodies: list[bytes], step_s: float, rows: list) -> dict | None:
    try:
        import ray
        from ray import serve
        from starlette.requests import Request
    except ImportError as exc:
        print(f"Ray Serve: skipped ({exc}; pip install 'ray[serve]')")
        return None

    from adaptive_resnet.runtime.server import decode_image

    @serve.deployment(max_ongoing_requests=64, max_queued_requests=256)
    class Front:
        @serve.batch(max_batch_size=64, batch_wait_timeout_s=step_s)
        async def classify(self, bodies: list[bytes]) -> list[dict]:
            return [{"class_index": 7, "size": decode_image(b, SIZE).shape[0]} for b in bodies]

        async def __call__(self, request: Request) -> dict:
            return await self.classify(await request.body())

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    t0 = time.perf_counter()
    serve.start(http_options={"host": "127.0.0.1", "port": PORT})
    serve.run(Front.bind(), route_prefix="/classify")
    start_s = time.perf_counter() - t0
    try:
        time.sleep(2.0)  # let the proxy settle
        # Ray names a worker process after the actor it hosts; Serve's run in workers of their own
        # (some started before serve.start, so "new processes" would miss them).
        added = {pid: cmd for pid, cmd in processes().items() if cmd.startswith(("ray::Serve", "ray::ProxyActor"))}
        info = {"processes": len(added), "rss_mb": sum(rss_mb(pid) for pid in added), "start_s": start_s,
                "names": sorted({cmd.split()[0] for cmd in added.values()})}
        measure("Ray Serve", f"http://127.0.0.1:{PORT}/classify", bodies, rows)
    finally:
        serve.shutdown()
        ray.shutdown()
    return info


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--step-s", type=float, default=0.02)
    parser.add_argument("--overload-rounds", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    bodies = [png(rng, SIZE) for _ in range(args.requests)]
    rows: list = []
    stacks = {"uvicorn": ours(bodies, args.step_s, rows)}
    stacks["Ray Serve"] = ray_serve(bodies, args.step_s, rows)
    print(f"\nfront-only serving, {args.requests} requests per concurrency, step window {args.step_s * 1e3:.0f} ms, stand-in cluster")
    print("clients | req/s uvicorn | req/s Ray Serve | ratio | p50 uvicorn | p50 Ray Serve | p99 uvicorn | p99 Ray Serve (ms)")
    for clients in (1, 8, 32):
        a = next(r for r in rows if r[0] == "uvicorn" and r[1] == clients)
        b = next((r for r in rows if r[0] == "Ray Serve" and r[1] == clients), None)
        if b is None:
            print(f"{clients:>7} | {a[2]:13.1f} | {'-':>15} |     - | {a[3]:11.1f} | {'-':>13} | {a[4]:11.1f} | -")
        else:
            print(f"{clients:>7} | {a[2]:13.1f} | {b[2]:15.1f} | {a[2] / b[2]:5.2f} | {a[3]:11.1f} | {b[3]:13.1f} | {a[4]:11.1f} | {b[4]:.1f}")
    for name, info in stacks.items():
        if info is not None:
            extra = f" ({', '.join(info['names'])})" if info.get("names") else " (in the controller's process)"
            print(f"{name}: start-up {info['start_s']:.2f} s, processes added {info['processes']}, "
                  f"their resident memory {info['rss_mb']:.0f} MB{extra}")
    trace = overload(bodies, args.overload_rounds)
    first, last = trace[0][1], trace[-1][1]
    shed = sum(st.get(503, 0) for _, _, st in trace)
    print(f"overload (128 clients, queue 32, 0.5 s steps of 16; {shed} of {trace[-1][0]} shed): RSS {first:.1f} MB after the first {trace[0][0]} requests, "
          f"{last:.1f} MB after {trace[-1][0]} ({last - first:+.1f} MB)")


if __name__ == "__main__":
    sys.exit(main())
