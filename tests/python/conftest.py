"""Black-box checks of the release binary from Python: the OpenAPI document is valid
OpenAPI 3.1, a client generated from it works, and schemathesis finds nothing; with a
Kafka broker (TIDEGATE_TEST_KAFKA_BOOTSTRAP), `--backend kafka` interoperates with a
native Kafka client and survives faults.

Each test gets a fresh `tidegate` process on port 0 with its own data directory."""

import os
import signal
import socket
import subprocess
import tempfile
import time
import uuid
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

    def __init__(self, *flags: str, data_dir: str | None = None):
        # A given data dir belongs to the caller (a restart reuses it) and is kept at stop.
        self.data_dir = tempfile.TemporaryDirectory() if data_dir is None else None
        data_path = self.data_dir.name if data_dir is None else data_dir
        env = {k: v for k, v in os.environ.items() if not k.startswith("TIDEGATE_")}
        env["RUST_LOG"] = "warn"
        args = [binary(), "--listen", "127.0.0.1:0", "--data-dir", data_path,
                "--jwt-secret", SECRET, *flags]
        # Files, not pipes: a pipe nobody drains fills up and blocks the server's logging.
        log_dir = Path(data_path)
        self.stdout_path, self.stderr_path = log_dir / "stdout.log", log_dir / "stderr.log"
        # A restart on the same data dir keeps the previous run's logs beside its own (the
        # address is read from a fresh stdout.log).
        for path in (self.stdout_path, self.stderr_path):
            if path.exists():
                path.replace(path.with_suffix(".previous.log"))
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

    def wait_until_ready(self, timeout: float = 30) -> None:
        """Waits for `/readyz` to say 200, as a load balancer would before sending traffic
        (the Kafka backend connects to the cluster in the background)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                ready = requests.get(self.url + "/readyz", timeout=5)
                if ready.status_code == 200:
                    return
                last = f"{ready.status_code} {ready.text}"
            except requests.RequestException as err:
                last = repr(err)
            if self.process.poll() is not None:
                raise AssertionError(f"tidegate exited with {self.process.returncode} while "
                                     f"waiting to be ready; stderr: {self.stderr_tail()}")
            if time.monotonic() >= deadline:
                raise AssertionError(f"not ready after {timeout}s: {last}; "
                                     f"stderr: {self.stderr_tail()}")
            time.sleep(0.1)

    def stderr_tail(self, chars: int = 3000) -> str:
        return self.stderr_path.read_text(errors="replace")[-chars:]

    def kill(self) -> None:
        """SIGKILL: a crash, with no graceful shutdown."""
        self.process.kill()
        self.process.wait(timeout=20)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=20)
        if self.data_dir is not None:
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


# ---- Kafka: `--backend kafka` against a real broker (scripts/kafka).

@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """The suite's broker (TIDEGATE_TEST_KAFKA_BOOTSTRAP, exported by scripts/test). Without
    it the Kafka tests are skipped, unless TIDEGATE_REQUIRE_KAFKA=1 (CI), where a missing
    broker is a failure: a skip there would hide that nothing was tested."""
    bootstrap = os.environ.get("TIDEGATE_TEST_KAFKA_BOOTSTRAP", "").strip()
    if bootstrap:
        return bootstrap
    if os.environ.get("TIDEGATE_REQUIRE_KAFKA") == "1":
        pytest.fail("TIDEGATE_REQUIRE_KAFKA=1 but TIDEGATE_TEST_KAFKA_BOOTSTRAP is not set: "
                    "start a broker with scripts/kafka start DIR and export its address")
    pytest.skip("no Kafka broker: set TIDEGATE_TEST_KAFKA_BOOTSTRAP=host:port "
                "(scripts/kafka start DIR prints one) to run the Kafka tests")


def kafka_prefix() -> str:
    """A topic and group prefix of its own per server, so tests sharing a broker never
    see each other's topics or groups."""
    return f"py-{uuid.uuid4().hex[:8]}."


def kafka_flags(bootstrap: str, prefix: str, *extra: str) -> tuple[str, ...]:
    return ("--backend", "kafka", "--kafka-bootstrap", bootstrap,
            "--kafka-topic-prefix", prefix, *extra)


@pytest.fixture
def kafka_server(kafka_bootstrap, start_server):
    """A ready gateway on the suite's broker, with a prefix of its own (`.prefix`)."""
    prefix = kafka_prefix()
    running = start_server(*kafka_flags(kafka_bootstrap, prefix))
    running.prefix = prefix
    running.wait_until_ready()
    return running


def free_port() -> int:
    """A loopback port nothing listens on now (released at once, so another process
    could take it in the short window before it is used)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class KafkaBroker:
    """A broker of its own, started by `scripts/kafka start` in a fresh directory and
    stopped by `scripts/kafka stop` (which goes by the pid file)."""

    SCRIPT = ROOT / "scripts" / "kafka"

    def __init__(self, port: int | None = None):
        self.parent = tempfile.TemporaryDirectory(prefix="tidegate-broker-")
        self.dir = Path(self.parent.name) / "broker"
        self.bootstrap: str | None = None
        self.port = port

    def start(self) -> str:
        env = dict(os.environ)
        if self.port is not None:
            env["TIDEGATE_KAFKA_PORT"] = str(self.port)
        started = subprocess.run([str(self.SCRIPT), "start", str(self.dir)], env=env,
                                 capture_output=True, text=True, timeout=180)
        if started.returncode != 0:
            raise RuntimeError(f"scripts/kafka start failed: {started.stderr[-3000:]}")
        line = next(l for l in started.stdout.splitlines() if l.startswith("KAFKA_BOOTSTRAP="))
        self.bootstrap = line.removeprefix("KAFKA_BOOTSTRAP=")
        return self.bootstrap

    def running(self) -> list[int]:
        """Live processes whose command line names this broker's server.properties."""
        return processes_naming(f"{self.dir}/server.properties".encode())

    def stop(self) -> None:
        # Safe when start failed half-way or never ran: stop goes by DIR/pid only.
        stop_brokers("stop", self.dir, self.running)
        self.parent.cleanup()


def processes_naming(marker: bytes) -> list[int]:
    """Live (not zombie) processes whose command line contains `marker`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if marker in (proc / "cmdline").read_bytes() and \
                    (proc / "stat").read_text().rsplit(") ", 1)[-1][:1] != "Z":
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def stop_brokers(command: str, directory: Path, running) -> None:
    """`scripts/kafka COMMAND DIRECTORY`, then SIGKILL for whatever `running()` still
    lists; fails the test when the script failed or left brokers behind."""
    if not directory.exists():
        return
    stopped = subprocess.run([str(KafkaBroker.SCRIPT), command, str(directory)],
                             capture_output=True, text=True, timeout=60)
    left = running()
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert stopped.returncode == 0, f"scripts/kafka {command} failed: {stopped.stderr}"
    assert not left, f"brokers {left} still ran after scripts/kafka {command} " \
                     f"({stopped.stderr.strip()}); killed them"


@pytest.fixture
def start_broker():
    """Starts brokers of the test's own (`start_broker(port=P)`); every one is stopped
    after the test, passed or failed."""
    brokers = []

    def start(port: int | None = None) -> KafkaBroker:
        brokers.append(KafkaBroker(port))
        brokers[-1].start()
        return brokers[-1]

    yield start
    for broker in brokers:
        broker.stop()


def fetch_all(server: "Server", topic: str, partition: int,
              unavailable_for: float = 0) -> list[dict]:
    """Every stored record of a partition from its log start, following `next_offset`
    (offsets may skip on Kafka). A 503 is tried again for up to `unavailable_for` seconds
    (a reader meeting a failover's last moments); otherwise every page must be 200."""
    records, offset = [], None
    deadline = time.monotonic() + unavailable_for
    while True:
        params = {"limit": 1000} if offset is None else {"offset": offset, "limit": 1000}
        page = server.request("GET", f"/v1/topics/{topic}/partitions/{partition}/records",
                              params=params)
        if page.status_code == 503 and time.monotonic() < deadline:
            time.sleep(0.25)
            continue
        assert page.status_code == 200, f"fetch {topic}/{partition}@{offset}: {page.text}"
        body = page.json()
        records += body["records"]
        if body["next_offset"] >= body["high_watermark"]:
            return records
        assert offset is None or body["next_offset"] > offset, body
        offset = body["next_offset"]
