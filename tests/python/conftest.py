"""Black-box checks of the release binary from Python: the OpenAPI document is valid
OpenAPI 3.1, a client generated from it works, and schemathesis finds nothing.

Each test gets a fresh `tidegate` process on port 0 with its own data directory."""

import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
SECRET = "tidegate-python-checks-secret-0123456789"


def binary() -> str:
    explicit = os.environ.get("TIDEGATE_BIN")
    if explicit:
        return explicit
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return str(target / "release" / "tidegate")


class Server:
    """A running `tidegate serve` and an admin token for it."""

    def __init__(self, *flags: str):
        self.data_dir = tempfile.TemporaryDirectory()
        env = {k: v for k, v in os.environ.items() if not k.startswith("TIDEGATE_")}
        env["RUST_LOG"] = "warn"
        args = [binary(), "--listen", "127.0.0.1:0", "--data-dir", self.data_dir.name,
                "--jwt-secret", SECRET, *flags]
        # Files, not pipes: a pipe nobody drains fills up and blocks the server's logging.
        log_dir = Path(self.data_dir.name)
        self.stdout_path, self.stderr_path = log_dir / "stdout.log", log_dir / "stderr.log"
        with open(self.stdout_path, "w") as out, open(self.stderr_path, "w") as err:
            self.process = subprocess.Popen(args, env=env, stdout=out, stderr=err)
        self.url = self._wait_for_address()
        self.admin_token = self.token("admin")

    def _wait_for_address(self) -> str:
        prefix = "tidegate listening on "
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for line in self.stdout_path.read_text().splitlines():
                if line.startswith(prefix):
                    return line[len(prefix):].strip()
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.process.kill()
        raise RuntimeError(f"tidegate did not start: {self.stderr_path.read_text()}")

    def token(self, scope: str) -> str:
        minted = subprocess.run([binary(), "token", "--sub", "python", "--scope", scope,
                                 "--jwt-secret", SECRET], capture_output=True, text=True,
                                check=True)
        return minted.stdout.strip()

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = kwargs.pop("headers", {})
        headers.setdefault("Authorization", f"Bearer {self.admin_token}")
        return requests.request(method, self.url + path, headers=headers, timeout=30, **kwargs)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.data_dir.cleanup()


@pytest.fixture
def server():
    running = Server()
    yield running
    running.stop()


@pytest.fixture
def start_server():
    """Starts servers with extra flags; all are stopped after the test."""
    started = []

    def start(*flags: str) -> Server:
        started.append(Server(*flags))
        return started[-1]

    yield start
    for running in started:
        running.stop()
