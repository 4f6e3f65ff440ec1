"""Headless Chromium (Debian's ``chromium``) renders a page, scripts included, and returns its DOM."""

import os
import shutil
import subprocess
import tempfile

import pytest

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage"]


def chromium() -> str:
    """The browser's path; skips the test where none is installed, unless CI requires one."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("GANVIRT_REQUIRE_BROWSER"):
            raise AssertionError("GANVIRT_REQUIRE_BROWSER is set but no chromium is installed")
        pytest.skip("no chromium installed (apt-get install chromium)")
    return path


def render(url: str, budget_ms: int = 15000) -> str:
    """The DOM of ``url`` after its scripts ran for up to ``budget_ms`` of virtual time."""
    with tempfile.TemporaryDirectory() as profile:
        out = subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}",
                              f"--virtual-time-budget={budget_ms}", "--dump-dom", url],
                             capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout
