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


class Page:
    """A page in headless Chromium driven over the DevTools protocol (for a click and what it
    changes): ``evaluate`` runs JavaScript in the page, ``screenshot`` writes a PNG."""

    def __init__(self, url: str, width: int = 1280, height: int = 1800):
        import json
        import socket
        import time
        import urllib.request

        from websockets.sync.client import connect

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.profile = tempfile.TemporaryDirectory(ignore_cleanup_errors=True)
        self.proc = subprocess.Popen([chromium(), *FLAGS, f"--user-data-dir={self.profile.name}",
                                      f"--remote-debugging-port={port}", "--remote-allow-origins=*",
                                      f"--window-size={width},{height}", url],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=5) as r:
                    pages = [t for t in json.loads(r.read()) if t["type"] == "page"]
                if pages:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "Chromium's DevTools endpoint did not come up"
            time.sleep(0.5)
        self.ws = connect(pages[0]["webSocketDebuggerUrl"], max_size=None)
        self.next_id = 0

    def send(self, method: str, **params) -> dict:
        import json

        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == self.next_id:
                assert "error" not in reply, reply
                return reply["result"]

    def evaluate(self, expression: str):
        return self.send("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60):
        import time

        deadline = time.monotonic() + timeout
        while not (value := self.evaluate(expression)):
            assert time.monotonic() < deadline, f"timed out waiting for {expression}"
            time.sleep(0.5)
        return value

    def screenshot(self, path: str) -> None:
        import base64

        with open(path, "wb") as f:
            f.write(base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"]))

    def close(self) -> None:
        import signal

        self.ws.close()
        os.killpg(self.proc.pid, signal.SIGTERM)  # the browser and its helper processes
        self.proc.wait(timeout=30)
        self.profile.cleanup()
