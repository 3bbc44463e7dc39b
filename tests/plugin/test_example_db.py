"""`--echo-example-db`: a failure found by one run is replayed first by the next.

The proof that the second run *replays* rather than finds again: it runs
with Hypothesis' reuse phase only (a profile registered by a tiny plugin),
so it generates nothing; it fails only if the database hands it the stored
counterexample, and judges nothing against an empty database.  Each run is in its
own directory (no shared `.hypothesis/`), with CI set: the CI profile has no
database of its own, and `--echo-example-db` must still be used.

The Redis test starts a real `redis-server` (Debian's `redis-server`, as
`.ci/run` installs) on a free loopback port, and always stops it.  Without
it the test skips, except in CI, where it fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from runs import ROOT, pytest_run

SEED_UPPER = "impl.seed_upper_server:SeedUpperServer"
REUSE_ONLY = """
from hypothesis import Phase, settings
settings.register_profile("reuse-only", phases=[Phase.reuse], derandomize=True,
                          database=None)
"""
START_TIMEOUT = 10.0
ECHO_4_FAILS = "ECHO-4   MUST   Half-close        FAIL"
#: With nothing to replay and nothing generated, nothing is judged.
ECHO_4_NOT_JUDGED = "ECHO-4   MUST   Half-close        not judged"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def redis_url() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        message = "redis-server is not installed (apt-get install -y redis-server)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must run the shared-database test", pytrace=False)
        pytest.skip(message)
    port = free_port()
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(
                        f"redis-server did not listen on 127.0.0.1:{port} within "
                        f"{START_TIMEOUT:g} s (exit status {server.poll()})"
                    )
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=5)


def conformance_run(where: Path, db: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """The seed's ECHO-4, from its own directory, with the database `db`."""
    where.mkdir(exist_ok=True)
    env = {**os.environ, "CI": "1", "PYTHONPATH": os.pathsep.join([str(where.parent), str(ROOT)])}
    return pytest_run(
        "--echo-impl",
        SEED_UPPER,
        "-k",
        "ECHO-4",
        f"--echo-example-db={db}",
        *extra,
        cwd=where,
        env=env,
        timeout=120,
    )


def replay_only(where: Path, db: str) -> subprocess.CompletedProcess[str]:
    (where.parent / "reuse_only.py").write_text(REUSE_ONLY)
    return conformance_run(where, db, "-p", "reuse_only", "--hypothesis-profile", "reuse-only")


def test_a_failure_found_on_one_machine_is_replayed_first_on_another(
    tmp_path: Path, redis_url: str
) -> None:
    found = conformance_run(tmp_path / "first", f"{redis_url}/0")
    assert ECHO_4_FAILS in found.stdout, found.stdout + found.stderr
    # Another directory, nothing in common but the Redis database: it replays it.
    again = replay_only(tmp_path / "second", f"{redis_url}/0")
    assert ECHO_4_FAILS in again.stdout, again.stdout + again.stderr
    assert "c0 = state.connect()\n    state.half_close(c0)" in again.stdout
    # The same run against an empty database has nothing to replay.
    empty = replay_only(tmp_path / "third", f"{redis_url}/1")
    assert ECHO_4_NOT_JUDGED in empty.stdout, empty.stdout + empty.stderr


def test_a_directory_is_a_database_too_even_under_ci(tmp_path: Path) -> None:
    shared = tmp_path / "examples"
    found = conformance_run(tmp_path / "first", str(shared))
    assert ECHO_4_FAILS in found.stdout, found.stdout + found.stderr
    assert any(p.is_file() for p in shared.rglob("*"))
    again = replay_only(tmp_path / "second", str(shared))
    assert ECHO_4_FAILS in again.stdout, again.stdout + again.stderr
    empty = replay_only(tmp_path / "third", str(tmp_path / "empty"))
    assert ECHO_4_NOT_JUDGED in empty.stdout, empty.stdout + empty.stderr
