"""Schemathesis against the served document, every check on, with and without a token.
Bounded: a fixed seed and a fixed number of examples per operation
(TIDEGATE_SCHEMATHESIS_EXAMPLES, default 100)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.mark.parametrize("authenticated", [True, False], ids=["with-token", "without-token"])
def test_schemathesis_finds_nothing(start_server, authenticated):
    # Long polls stay within schemathesis' 10 s request timeout; the served document states
    # the configured maximum, so generated requests respect it.
    server = start_server("--max-wait-ms", "2000")
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "--config-file", str(HERE / "schemathesis.toml"),
        "--no-color",
        "run", server.url + "/openapi.json",
        "--checks", "all",
        "--seed", "42",
        "--max-examples", os.environ.get("TIDEGATE_SCHEMATHESIS_EXAMPLES", "100"),
    ]
    if authenticated:
        command += ["-H", f"Authorization: Bearer {server.admin_token}"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-5000:]
    assert "passed" in run.stdout
