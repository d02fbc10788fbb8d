"""The live cluster page in a real headless browser (Debian's Chromium): it loads, shows every
device, and changes after a step. Skipped, with the reason, where no Chromium is installed
(``.ci/run`` installs it)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile

import pytest

from adaptive_resnet.runtime.server import Server, serve_in_thread
from test_serve_http import StandIn, png, post

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.browser, pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (apt-get install chromium)")]


def rendered(url: str) -> str:
    """The page's DOM after its script ran (Chromium's --dump-dom with a virtual time budget)."""
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
             "--virtual-time-budget=4000", "--dump-dom", url],
            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_the_page_shows_every_device_and_changes_after_a_step():
    controller = StandIn(devices=("camera", "phone", "hub"))
    server = Server(controller, step_s=0.05)
    url, stop = serve_in_thread(server)
    try:
        assert post(url, png())[0] == 200
        first = rendered(url + "/")
        assert all(f'id="device-{name}"' in first for name in ("camera", "phone", "hub")), first[-2000:]
        assert "answered 1," in first
        assert post(url, png())[0] == 200
        second = rendered(url + "/")
        assert "answered 2," in second and second != first
    finally:
        stop()
        server.close(grace_s=1.0)
