"""The transform is a parameter: upper (the default), identity (a plain echo), or MODULE:FUNC.

A plain echo server fails ECHO-1 under upper and passes under identity; the
zoo's transform defects are still rejected under upper; the seed's plain
echo server, checked with identity, keeps its other defects and no longer
fails ECHO-1; a bad value is a usage error; the replay command carries the
transform and honours it.
"""

from __future__ import annotations

import json
import os
import re
import runpy
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import settings
from runs import ROOT, pytest_run

from impl.select_server import SelectEchoServer
from impl.zoo import DEFECTS
from spec import replay, report_html
from spec.checker import check
from spec.model import IDENTITY, TRANSFORMS, UPPER, Connection, Transform, diagnose, transform
from spec.requirements import STREAM, TRANSFORM
from spec.targets import BUNDLED, Target, TargetError, load_targets_file, transform_named


class PlainEchoServer(SelectEchoServer):
    """The reference server with its transform hook made the identity: a correct plain echo."""

    def transform(self, data: bytes) -> bytes:
        return data


PLAIN = f"{__name__}:PlainEchoServer"
QUICK = settings(max_examples=15, stateful_step_count=10, derandomize=True, database=None)


def rot13(data: bytes) -> bytes:
    return data.translate(ROT13)


ROT13 = bytes.maketrans(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
    b"NOPQRSTUVWXYZABCDEFGHIJKLMnopqrstuvwxyzabcdefghijklm",
)


# -- the model -------------------------------------------------------------------------


def test_the_named_transforms() -> None:
    assert set(TRANSFORMS) == {"upper", "identity"}
    assert transform(b"ab\xe9") == UPPER(b"ab\xe9") == b"AB\xe9"
    assert transform(b"ab\xe9", IDENTITY) == b"ab\xe9"
    assert Transform("upper", bytes.upper) == UPPER and UPPER != IDENTITY


def test_a_plain_echo_is_untransformed_under_upper_and_right_under_identity() -> None:
    v = diagnose(b"abc", b"abc")
    assert v is not None and v.requirement == TRANSFORM
    assert "came back untransformed" in v.summary
    assert diagnose(b"abc", b"abc", transform=IDENTITY) is None
    assert diagnose(b"abc", b"ab", transform=IDENTITY, settled=True).requirement == STREAM  # type: ignore[union-attr]


def test_under_identity_a_changed_byte_came_back_as_another() -> None:
    v = diagnose(b"abcdef", b"abXdef", transform=IDENTITY)
    assert v is not None and v.requirement == TRANSFORM
    assert "byte 0x63 (b'c') came back as 0x58 (b'X'); expected 0x63 (b'c')" in v.summary
    assert "untransformed" not in v.summary


def test_a_connection_expects_its_transform() -> None:
    c = Connection("c0", transform=IDENTITY)
    c.record_sent(b"hello")
    assert bytes(c.expected) == b"hello"
    assert c.record_received(b"hel") is None
    v = c.record_received(b"lO")
    assert v is not None and v.requirement == TRANSFORM and v.offset == 4
    upper = Connection("c1")
    upper.record_sent(b"hello")
    assert bytes(upper.expected) == b"HELLO"


# -- naming a transform ----------------------------------------------------------------


def test_a_module_function_is_imported_and_probed() -> None:
    how = transform_named(f"{__name__}:rot13")
    assert how.name == f"{__name__}:rot13"
    assert how(b"Hello") == b"Uryyb"
    assert transform_named(" identity ") is IDENTITY


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lower", "should be upper, identity or MODULE:FUNC"),
        ("no_such_module_here:f", "cannot import module 'no_such_module_here'"),
        ("json:no_such_function", "module 'json' has no 'no_such_function'"),
        ("sys:maxsize", "is not a function"),
        ("base64:b64encode", "bytes for 384: a transform maps each byte to one byte"),
        ("json:loads", "raised"),
        ("binascii:hexlify", "returned 768 bytes"),
        ("builtins:reversed", "returned reversed"),
        ("builtins:sorted", "returned list"),
        (f"{__name__}:reverse", "is not byte-wise"),
    ],
)
def test_a_bad_transform_is_one_clear_line(text: str, message: str) -> None:
    with pytest.raises(TargetError, match=message.replace("(", r"\(")) as e:
        transform_named(text)
    assert "\n" not in str(e.value)


def reverse(data: bytes) -> bytes:
    return data[::-1]


def test_a_targets_file_gives_each_target_its_transform(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text(
        f'[[target]]\nname = "plain"\nimpl = "{PLAIN}"\ntransform = "identity"\n'
        f'[[target]]\nname = "ref"\nimpl = "{BUNDLED["reference"]}"\n'
    )
    plain, ref = load_targets_file(path)
    assert plain.echo is IDENTITY and ref.transform is None and ref.echo is UPPER
    path.write_text(f'[[target]]\nname = "p"\nimpl = "{PLAIN}"\ntransform = "lower"\n')
    with pytest.raises(TargetError, match=r"target 1 \(p\): transform 'lower' should be upper"):
        load_targets_file(path)
    path.write_text(f'[[target]]\nname = "p"\nimpl = "{PLAIN}"\ntransform = 1\n')
    with pytest.raises(TargetError, match="transform 1 should be a string"):
        load_targets_file(path)


def test_the_example_targets_check_the_seed_echo_server_as_a_plain_echo() -> None:
    targets = {t.name: t for t in load_targets_file(ROOT / "examples" / "targets.toml")}
    assert targets["seed-echo"].echo is IDENTITY
    assert targets["seed-upper"].echo is UPPER


# -- verdicts --------------------------------------------------------------------------


def test_a_plain_echo_fails_upper_and_passes_identity() -> None:
    outcome = check(Target("impl", PLAIN), "ECHO-1", hypothesis_settings=QUICK, budget=30)
    assert outcome.verdict == "fail", outcome.detail
    assert outcome.detail.startswith("ECHO-1: ") and "came back untransformed" in outcome.detail
    assert "--transform" not in outcome.replay  # upper is the default: not written
    for req_id in ("ECHO-1", "ECHO-2", "ECHO-4"):
        outcome = check(
            Target("impl", PLAIN, transform=IDENTITY), req_id, hypothesis_settings=QUICK, budget=30
        )
        assert outcome.verdict == "pass", outcome.detail + "\n" + outcome.counterexample


def test_an_uppercase_server_fails_identity() -> None:
    outcome = check(
        Target("impl", BUNDLED["reference"], transform=IDENTITY),
        "ECHO-1",
        hypothesis_settings=QUICK,
        budget=30,
    )
    assert outcome.verdict == "fail", outcome.detail
    assert "--transform identity" in outcome.replay


@pytest.mark.parametrize("name", [d.name for d in DEFECTS.values() if "transform:" in d.target])
def test_the_zoo_transform_defects_are_still_rejected_under_upper(name: str) -> None:
    d = DEFECTS[name]
    outcome = check(
        Target("impl", d.target, transform=UPPER),
        "ECHO-1",
        hypothesis_settings=settings(QUICK, max_examples=40),
        budget=30,
    )
    assert outcome.verdict == "fail" and outcome.detail.startswith("ECHO-1: "), outcome.detail


SEED_ECHO = Target("impl", BUNDLED["seed-echo"], transform=IDENTITY)


@pytest.mark.parametrize(
    ("req_id", "verdict"),
    [("ECHO-1", "not a fail"), ("ECHO-4", "fail"), ("ECHO-5", "fail"), ("ECHO-6", "fail")],
)
def test_the_seed_plain_echo_under_identity_keeps_its_other_defects(
    req_id: str, verdict: str
) -> None:
    outcome = check(SEED_ECHO, req_id, hypothesis_settings=settings(QUICK, max_examples=30))
    if verdict == "fail":
        assert outcome.verdict == "fail" and outcome.detail.startswith(req_id), outcome.detail
        assert "--transform identity" in outcome.replay
    else:
        assert outcome.verdict != "fail", outcome.detail + "\n" + outcome.counterexample


# -- the replay ------------------------------------------------------------------------

SEND = ["c0 = state.connect()", "state.send(c0, Payload(b'a'))"]


def test_the_replay_honours_transform(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--impl", PLAIN, "--expect", "ECHO-1", *SEND]
    assert replay.main(args) == replay.REPRODUCED  # upper: a plain echo is untransformed
    assert "came back untransformed" in capsys.readouterr().out
    assert replay.main(["--transform", "identity", *args]) == replay.NOT_REPRODUCED
    assert "no violation" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        replay.main(["--transform", "lower", *args])
    assert e.value.code == replay.USAGE_ERROR
    assert "argument --transform: 'lower' should be upper, identity" in capsys.readouterr().err


def test_a_regression_file_keeps_the_transform(tmp_path: Path) -> None:
    target = Target("impl", BUNDLED["reference"], transform=IDENTITY)
    violation = replay.run_program(target, "ECHO-1", SEND)
    assert violation is not None
    path = replay.write_regression(tmp_path, target, "ECHO-1", SEND, violation)
    assert "transform=transform_named('identity')" in path.read_text()
    runpy.run_path(str(path))["test_echo_1_still_violated"]()  # it runs, and still fails
    assert replay.run_program(replace(target, transform=None), "ECHO-1", SEND) is None


# -- the plugin ------------------------------------------------------------------------


def test_a_bad_echo_transform_is_a_usage_error(tmp_path: Path) -> None:
    for value, message in [
        ("lower", "argument --echo-transform: 'lower' should be upper, identity or MODULE:FUNC"),
        ("base64:b64encode", "a transform maps each byte to one byte"),
    ]:
        done = pytest_run("--echo-impl", PLAIN, "--echo-transform", value, timeout=60)
        assert done.returncode == 4, done.stdout + done.stderr
        assert message in done.stderr
        assert "test session starts" not in done.stdout
    (tmp_path / "pytest.ini").write_text(f"[pytest]\necho_impl = {PLAIN}\necho_transform = x\n")
    done = pytest_run(cwd=tmp_path, timeout=60)
    assert done.returncode == 4, done.stdout + done.stderr
    assert "ini option echo_transform: 'x' should be upper" in done.stderr


def test_the_run_names_each_targets_transform(tmp_path: Path) -> None:
    """--echo-transform applies to every target without its own; the summary,
    the JSON and the HTML name it, and a failure's replay carries it."""
    (tmp_path / "plain_echo.py").write_text(
        "from impl.select_server import SelectEchoServer\n\n\n"
        "class PlainEchoServer(SelectEchoServer):\n"
        "    def transform(self, data):\n"
        "        return data\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    report, html = tmp_path / "r.json", tmp_path / "r.html"
    done = pytest_run(
        "--echo-impl", "plain_echo:PlainEchoServer",
        "--echo-impl", BUNDLED["reference"],
        "--echo-transform", "identity",
        "-k", "ECHO-1 and not ECHO-10",
        "--echo-budget", "20",
        f"--echo-report={report}", f"--echo-html={html}",
        env=env, timeout=180,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert re.search(r"^transform +identity +identity$", done.stdout, re.M), done.stdout
    assert re.search(r"^ECHO-1 +MUST +Transform +PASS +FAIL$", done.stdout, re.M), done.stdout
    assert "--transform identity" in done.stdout
    targets = json.loads(report.read_text())["targets"]
    assert {t["transform"] for t in targets.values()} == {"identity"}
    assert targets["select_server"]["requirements"]["ECHO-1"]["verdict"] == "fail"
    assert targets["plain_echo"]["requirements"]["ECHO-1"]["verdict"] == "pass"
    assert "transform: identity" in html.read_text()
    # The ini key does the same.
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\necho_impl = plain_echo:PlainEchoServer\necho_transform = identity\n"
    )
    done = pytest_run("-k", "ECHO-1 and not ECHO-10", cwd=tmp_path, env=env, timeout=180)
    assert re.search(r"^ECHO-1 +MUST +Transform +PASS$", done.stdout, re.M), done.stdout


def test_the_html_report_shortens_this_machines_paths() -> None:
    """The page is made to be shared (docs/report.png is one): a traceback's
    paths are relative to the run's directory, Python's own are <python>/..."""
    here = os.getcwd()
    socket_py = str(Path(json.__file__).parent.parent / "socket.py")
    text = f'File "{here}/impl/x.py", line 1\nFile "{socket_py}", line 2\n{sys.executable} -m x'
    assert report_html._local(text) == (
        'File "impl/x.py", line 1\nFile "<python>/socket.py", line 2\npython -m x'
    )
