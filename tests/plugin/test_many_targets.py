"""Several targets in one run: names, the targets file, the matrix, the verdicts.

The unit tests use `spec.targets` and `spec.matrix` directly; the others run
pytest in a subprocess as a user would (`tests/runs.py`).
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest
from runs import ROOT, pytest_run

from spec.matrix import TargetResult, cell, overall, report
from spec.targets import (
    Target,
    TargetError,
    default_name,
    impl,
    load_targets_file,
    named,
    server_cmd,
)

SEED_UPPER = "impl.seed_upper_server:SeedUpperServer"
REFERENCE = "impl.select_server:SelectEchoServer"


@pytest.mark.parametrize(
    ("command", "name"),
    [
        ("node examples/echo_server.js {port}", "echo_server"),
        ("python -m impl.select_server --port {port}", "select_server"),
        ("python3 -u ./srv.py --port={port}", "srv"),
        ("env PORT={port} ./bin/server", "server"),
        ("PORT={port} ./my-server", "my-server"),
        ("/opt/echo/bin/echod {port}", "echod"),
        ("python3 -c 'import sys; serve()' {port}", "python3"),
    ],
)
def test_a_command_is_named_after_its_program(command: str, name: str) -> None:
    assert default_name(server_cmd(command)) == name


def test_names_are_unique_and_given_names_are_kept() -> None:
    targets = named(
        [
            impl(SEED_UPPER),
            impl(SEED_UPPER),
            Target("impl", REFERENCE, name="seed_upper_server-2"),
            server_cmd("python -m impl.seed_upper_server --port {port}"),
        ]
    )
    assert [t.name for t in targets] == [
        "seed_upper_server",
        "seed_upper_server-3",
        "seed_upper_server-2",
        "seed_upper_server-4",
    ]
    with pytest.raises(TargetError, match="two targets are named 'x'"):
        named([Target("impl", REFERENCE, name="x"), Target("impl", SEED_UPPER, name="x")])


def test_the_example_targets_file_lists_every_bundled_design() -> None:
    targets = load_targets_file(ROOT / "examples" / "targets.toml")
    assert [t.name for t in targets] == [
        "reference",
        "selectors",
        "asyncio",
        "threaded",
        "seed-echo",
        "seed-upper",
        "node",
    ]
    assert {t.kind for t in targets} == {"impl", "cmd"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[target]]\nname = 'a'\n", "give cmd or impl (exactly one)"),
        ("[[target]]\nname = 'a'\ncmd = 'x {port}'\nimpl = 'a:B'\n", "exactly one"),
        ("[[target]]\nname = 'a b'\ncmd = 'x {port}'\n", "should be letters, digits"),
        ("[[target]]\nname = 'a'\ncmd = 'x'\n", "has no '{port}' placeholder"),
        ("[[target]]\nname = 'a'\ncmd = 'x {port}'\nsettle = nan\n", "settle must be a positive"),
        ("[[target]]\nname = 'a'\ncmd = 'x {port}'\nsettle = 0\n", "settle must be a positive"),
        ("[[target]]\nname = 'a'\ncmd = 'x {port}'\nport = 1\n", "unknown key 'port'"),
        (
            "[[target]]\nname = 'a'\ncmd = 'x {port}'\n[[target]]\nname = 'a'\ncmd = 'y {port}'\n",
            None,
        ),
        ("target = 'x'\n", "should hold [[target]] tables"),
        ("[[target]\n", "is not valid TOML"),
    ],
)
def test_a_bad_targets_file_is_one_clear_line(
    tmp_path: Path, text: str, message: str | None
) -> None:
    path = tmp_path / "targets.toml"
    path.write_text(text)
    if message is None:  # well-formed, but two targets share a name
        with pytest.raises(TargetError, match="two targets are named 'a'"):
            named(load_targets_file(path))
        return
    with pytest.raises(TargetError) as e:
        load_targets_file(path)
    assert message in str(e.value) and "\n" not in str(e.value)


def _result(entries: dict[str, dict], name: str = "t") -> TargetResult:
    return TargetResult(Target("impl", REFERENCE, name=name), entries)


ALL_PASS = {f"ECHO-{i}": {"verdict": "pass"} for i in range(1, 11)}


def test_a_target_passes_only_when_every_must_was_judged_and_passed() -> None:
    assert _result(ALL_PASS).verdict(strict=False) == "pass"
    musts = {k: v for k, v in ALL_PASS.items() if k not in ("ECHO-8", "ECHO-9", "ECHO-10")}
    assert _result(musts).verdict(strict=False) == "pass"
    assert _result(musts).verdict(strict=True) == "incomplete"
    assert _result({**ALL_PASS, "ECHO-8": {"verdict": "fail"}}).verdict(strict=False) == "pass"
    assert _result({**ALL_PASS, "ECHO-8": {"verdict": "fail"}}).verdict(strict=True) == "fail"
    for verdict in ("not-run", "inconclusive", "anything-new"):
        r = _result({**ALL_PASS, "ECHO-4": {"verdict": verdict, "detail": "why\nmore"}})
        assert r.verdict(strict=False) == "incomplete"
        assert cell(r.entries["ECHO-4"], "ECHO-4", False) == "not judged"
        assert r.not_judged("deselected")["ECHO-4"] == f"{verdict}: why"
    masked = _result({**ALL_PASS, "ECHO-4": {"verdict": "not-run", "masked_by": "ECHO-5"}})
    assert masked.not_judged("x")["ECHO-4"] == "not-run: masked by ECHO-5"
    # A failure wins over what was not judged.
    both = _result({"ECHO-1": {"verdict": "fail"}})
    assert both.verdict(strict=False) == "fail"
    assert overall([_result(ALL_PASS), _result(musts), both], False) == "fail"
    assert overall([_result(ALL_PASS), _result({})], False) == "incomplete"


def test_the_report_passes_every_key_of_an_entry_through() -> None:
    entry = {
        "level": "MUST",
        "verdict": "inconclusive",
        "detail": "d",
        "masked_by": None,
        "environment": {"sndbuf": 4096},
        "something-new": [1, 2],
    }
    one = report([_result({"ECHO-2": entry})], strict=False, not_run="not run")
    assert one["requirements"]["ECHO-2"].items() >= entry.items()
    assert one["requirements"]["ECHO-3"]["detail"] == "not run"
    two = report([_result({"ECHO-2": entry}), _result(ALL_PASS, "u")], strict=False, not_run="n")
    assert set(two) == {"verdict", "strict", "targets"}
    assert two["targets"]["t"]["requirements"]["ECHO-2"].items() >= entry.items()


def test_several_targets_in_one_run_under_xdist(tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    done = pytest_run(
        "--echo-impl",
        SEED_UPPER,
        "--echo-impl",
        REFERENCE,
        "--echo-server-cmd",
        "python -m impl.select_server --port={port}",
        "-n",
        "2",
        "-k",
        "ECHO-4 and not select_server-2 or select_server-2-ECHO-1]",
        f"--echo-report={report_path}",
        "-rA",
    )
    assert done.returncode == 1, done.stdout
    out = done.stdout
    assert "PASSED spec/test_conformance.py::test_requirement[select_server-ECHO-4]" in out
    assert "FAILED spec/test_conformance.py::test_requirement[seed_upper_server-ECHO-4]" in out
    assert "test_requirement[select_server-2-ECHO-1]" in out
    lines = out.splitlines()
    header = lines[lines.index(next(s for s in lines if s.startswith("ECHO-1 "))) - 1]
    assert header.split() == ["seed_upper_server", "select_server", "select_server-2"]
    assert "verdict (MUST requirements)       FAIL               INCOMPLETE" in out
    data = json.loads(report_path.read_text())
    assert data["verdict"] == "fail"
    targets = data["targets"]
    assert list(targets) == ["seed_upper_server", "select_server", "select_server-2"]
    assert targets["seed_upper_server"]["requirements"]["ECHO-4"]["verdict"] == "fail"
    assert targets["select_server"]["requirements"]["ECHO-4"]["verdict"] == "pass"
    assert targets["select_server-2"]["kind"] == "cmd"
    assert targets["select_server-2"]["requirements"]["ECHO-1"]["verdict"] == "pass"
    assert targets["select_server"]["verdict"] == "incomplete"


def test_a_targets_file_names_the_tests(tmp_path: Path) -> None:
    path = tmp_path / "targets.toml"
    path.write_text(
        textwrap.dedent(f"""\
        [[target]]
        name = "seed-upper"
        impl = "{SEED_UPPER}"
        [[target]]
        name = "reference"
        impl = "{REFERENCE}"
        """)
    )
    done = pytest_run(f"--echo-targets={path}", "-k", "seed-upper-ECHO-5", "-rA")
    assert done.returncode == 1
    assert "test_requirement[seed-upper-ECHO-5]" in done.stdout
    assert "1 failed, 19 deselected" in done.stdout


FAKE_CHECKER = '''
"""Stands in for the checker: verdicts the real one gives rarely."""
import spec.test_conformance as conformance
from spec.checker import Outcome
from spec.requirements import BY_ID

class Later(Outcome):
    def as_report(self):
        return {**super().as_report(), "masked_by": getattr(self, "masked_by", None),
                "environment": {"sndbuf": 4096}}

def check(target, req_id, *, settle, **kwargs):
    level = BY_ID[req_id].level.value
    if req_id == "ECHO-4":
        o = Later(req_id, level, "not-run", detail="programs kept failing ECHO-5 first; "
                  "raise --echo-settle (now 2)")
        o.masked_by = "ECHO-5"
        return o
    if req_id == "ECHO-2":
        return Later(req_id, level, "inconclusive", detail="failed once, not on replay",
                     program=["c0 = state.connect()"], counterexample="c0 = state.connect()")
    return Later(req_id, level, "pass", detail="no violation found")

conformance.check = check
'''


def test_what_was_not_judged_is_a_skip_saying_why(tmp_path: Path) -> None:
    (tmp_path / "fake_checker.py").write_text(FAKE_CHECKER)
    report_path, regressions = tmp_path / "report.json", tmp_path / "regressions"
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    done = pytest_run(
        "-p",
        "fake_checker",
        "--echo-impl",
        REFERENCE,
        f"--echo-report={report_path}",
        f"--echo-regressions={regressions}",
        env=env,
    )
    out = done.stdout
    assert done.returncode == 1, out + done.stderr
    assert "8 passed, 2 skipped" in out
    assert "ECHO-4 not judged for select_server (not-run): masked by ECHO-5" in out
    assert "ECHO-2 not judged for select_server (inconclusive): failed once, not on replay" in out
    assert "raise --echo-settle" not in out and "@seed" not in out
    assert "verdict: INCOMPLETE" in out
    assert not regressions.exists()  # nothing written for an inconclusive outcome
    data = json.loads(report_path.read_text())
    assert data["verdict"] == "incomplete"
    assert data["requirements"]["ECHO-4"]["masked_by"] == "ECHO-5"
    assert data["requirements"]["ECHO-2"]["environment"] == {"sndbuf": 4096}
    assert data["not_judged"] == {
        "ECHO-2": "inconclusive: failed once, not on replay",
        "ECHO-4": "not-run: masked by ECHO-5",
    }
