"""Races real servers die in: a client that sends and resets (or closes) at once.

A classic C epoll server (`tests/servers/epoll_echo.c`), built three ways:
without `signal(SIGPIPE, SIG_IGN)` it dies of SIGPIPE at the second write
after a client's reset; with it, and every write error closing that
connection only, it is correct; taking ECONNRESET on a write for a fatal
error, it exits.  The checker must reject the first and third under ECHO-5,
with a short program, and pass the second.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import Phase, settings

from spec.checker import check
from spec.replay import run_program
from spec.targets import Target

SOURCE = Path(__file__).parent / "servers" / "epoll_echo.c"
VARIANTS = {
    "sigpipe": [],
    "correct": ["-DIGNORE_SIGPIPE"],
    "exit-on-econnreset": ["-DIGNORE_SIGPIPE", "-DEXIT_ON_ECONNRESET"],
    "strlen": ["-DIGNORE_SIGPIPE", "-DSTRLEN_ECHO"],
}
RACE = ["c0 = state.connect()", "state.send_and_abort(c0, Payload(b'x', 65536))"]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Target]:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler (cc or gcc) to build tests/servers/epoll_echo.c")
    out = tmp_path_factory.mktemp("epoll")
    built = {}
    for name, flags in VARIANTS.items():
        binary = out / name
        subprocess.run([cc, "-O1", *flags, "-o", str(binary), str(SOURCE)], check=True, timeout=60)
        built[name] = Target("cmd", f"{binary} {{port}}", name=name)
    return built


@pytest.mark.parametrize(
    ("variant", "death"),
    [("sigpipe", "signal SIGPIPE"), ("exit-on-econnreset", "Connection reset by peer")],
)
@pytest.mark.parametrize("rule", ["send_and_abort", "send_and_close"])
def test_the_race_kills_what_it_should(
    servers: dict[str, Target], variant: str, death: str, rule: str
) -> None:
    program = ["c0 = state.connect()", f"state.{rule}(c0, Payload(b'x', 65536))"]
    violation = run_program(servers[variant], "ECHO-5", program)
    assert violation is not None and death in violation.describe(), violation


def test_the_correct_variant_survives_the_race(servers: dict[str, Target]) -> None:
    for rule in ("send_and_abort", "send_and_close"):
        program = ["c0 = state.connect()", f"state.{rule}(c0, Payload(b'x', 65536))"]
        assert run_program(servers["correct"], "ECHO-5", program) is None


def test_the_search_finds_sigpipe_in_few_steps(servers: dict[str, Target]) -> None:
    outcome = check(
        servers["sigpipe"],
        "ECHO-5",
        hypothesis_settings=settings(max_examples=40, database=None, derandomize=True),
        budget=60,
    )
    assert outcome.verdict == "fail", outcome.detail
    assert "SIGPIPE" in outcome.detail, outcome.detail
    assert len(outcome.program) <= 3, outcome.program


def test_the_correct_variant_passes_resilience(servers: dict[str, Target]) -> None:
    outcome = check(
        servers["correct"],
        "ECHO-5",
        hypothesis_settings=settings(
            max_examples=10,
            stateful_step_count=10,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
        ),
        budget=60,
    )
    assert outcome.verdict == "pass", outcome.detail


@pytest.mark.parametrize(
    "target",
    [
        Target("impl", "impl.select_server:SelectEchoServer"),
        Target("impl", "impl.selectors_server:SelectorsEchoServer"),
        Target("impl", "impl.select_server:SelectEchoServer").as_process(),
        Target("cmd", f"{shlex.quote(sys.executable)} -m impl.asyncio_server --port {{port}}"),
    ],
    ids=["select", "selectors", "select-process", "asyncio-process"],
)
def test_correct_designs_survive_the_race(target: Target) -> None:
    for rule in ("send_and_abort", "send_and_close"):
        program = ["c0 = state.connect()", f"state.{rule}(c0, Payload(b'x', 65536))"]
        assert run_program(target, "ECHO-5", program) is None


@pytest.mark.parametrize(
    ("program", "named"),
    [
        (
            [
                "c0 = state.connect()",
                "state.send(c0, Payload(b'ab\\x00cd'), writes=1)",
            ],
            "3 echo bytes never arrived",
        ),
        (
            [
                "c0 = state.connect()",
                f"state.send(c0, Payload(b'{'x' * 40}'), writes=1)",
                "state.send(c0, Payload(b'yz'), writes=1)",
            ],
            "38 bytes more than the echo of what was sent (a copy of earlier echo: duplicated)",
        ),
    ],
    ids=["after-a-nul", "stale-bytes"],
)
def test_an_echo_of_strlen_bytes_is_a_stream_fault(
    servers: dict[str, Target], program: list[str], named: str
) -> None:
    """Issue 20: a byte inserted into the stream was reported as ECHO-1, "byte
    0xaa came back as 0x02"; ECHO-1 is only a wrong transform of the byte at
    its own offset."""
    violation = run_program(servers["strlen"], "ECHO-2", program)
    assert violation is not None and violation.requirement == "ECHO-2", violation
    assert named in violation.summary, violation


def test_the_strlen_server_never_fails_the_transform(servers: dict[str, Target]) -> None:
    outcome = check(
        servers["strlen"],
        "ECHO-1",
        hypothesis_settings=settings(max_examples=30, database=None, derandomize=True),
        budget=20,
    )
    assert outcome.verdict != "fail", outcome.detail
    assert any(f.requirement == "ECHO-2" and f.verdict == "fail" for f in outcome.findings)
