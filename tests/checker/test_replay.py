"""`python -m spec.replay` as a user runs it: exit statuses, one-line errors, safe steps.

The command-line tests run the module in a subprocess against in-process
servers (no ports of their own beyond the driver's 127.0.0.1 listener), each
bounded by a timeout.  The rest check, in-process, that every line the
checker can print is a step the replay accepts, and that a diagnosis stays
readable however much data it carries.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import INITIALIZE_RULE_MARKER, RULE_MARKER
from runs import ROOT

from spec.machine import FLOODS, PAYLOADS, SMALL, EchoConformance, machine_for
from spec.model import SHOWN, Violation
from spec.program import BOUNDS, Payload, Ref, format_step, parse
from spec.replay import (
    FIXED_PROGRAM_RULES,
    MAX_PAYLOAD_SIZE,
    InvalidProgram,
    main,
    parse_program,
    rules_of,
    run_program,
)
from spec.targets import Target

PY = sys.executable
SEED_UPPER = "impl.seed_upper_server:SeedUpperServer"
REFERENCE = "impl.select_server:SelectEchoServer"
#: Resetting a connection kills the seed server: ECHO-5, in well under a second.
CRASH = ["c0 = state.connect()", "state.abort(c0)"]


def replay(
    *args: str, impl: str = SEED_UPPER, expect: str = "ECHO-5", timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    options = ["--impl", impl] if impl else []
    options += ["--expect", expect] if expect else []
    return subprocess.run(
        [PY, "-m", "spec.replay", *options, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_one_line_error(
    done: subprocess.CompletedProcess[str], status: int, message: str
) -> None:
    assert done.returncode == status, done.stdout + done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert message in done.stderr, done.stderr


# -- exit statuses 0 and 1 -----------------------------------------------------------------


def test_a_reproduced_violation_exits_0() -> None:
    done = replay(*CRASH)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("reproduced:\nECHO-5: ")
    assert done.stderr == ""


def test_a_program_pasted_as_one_argument_is_read_line_by_line() -> None:
    done = replay("\n".join(CRASH) + "\n")
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_teardown_line_at_the_end_is_accepted() -> None:
    assert replay(*CRASH, "state.teardown()").returncode == 0


def test_a_program_the_server_passes_exits_1() -> None:
    done = replay(*CRASH, impl=REFERENCE)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "no violation: the program passed" in done.stdout
    assert done.stderr == ""


def test_a_different_violation_first_exits_1() -> None:
    done = replay(
        "c0 = state.connect()",
        "state.send(c0, Payload(b'a'))",
        impl="impl.seed_echo_server:SeedEchoServer",
        expect="ECHO-2",
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "a different violation happened first:\nECHO-1: " in done.stdout


# -- exit status 3: the program is invalid ---------------------------------------------------


#: One line of each kind a user can get wrong, each run as the user would.
INVALID_LINES = [
    ("state.send(c9, Payload(b'a'))", "c9 is not bound by an earlier line"),
    ("state.fly(c0)", "state.fly is not a rule of this machine"),
    ("state.read(c0)", "missing a required argument: 'size'"),
    ("state.read(c0, b'x')", "argument size of state.read is an int, not b'x'"),
    ("state.send(c0,", "not valid Python"),
    ("import os", "not a step of a conformance program"),
    ("state.__class__.__init__(state)", "not a step of a conformance program"),
    ("state.send(c0, Payload(b'x', 10**12))", "10 ** 12 is not a literal"),
    (
        "state.send(c0, Payload(b'x', 1000000000000))",
        "Payload size 1000000000000 is out of range: replay sends 1 byte to 64 MiB",
    ),
    (f"state.send(c0, Payload({b'x' * 65!r}))", "a Payload pattern is 1 to 64 bytes, not 65"),
]
#: More of each kind, checked through `main()` in-process (a subprocess costs 0.4 s).
MORE_INVALID_LINES = [
    ("state.__init__(c0)", "state.__init__ is not a rule"),
    ("state._judge()", "state._judge is not a rule"),
    ("state.abort(c0, c0)", "too many positional arguments"),
    ("state.send(c0, Payload(b'a'), wait=1)", "unexpected keyword argument 'wait'"),
    ("state.send(c0, 3)", "argument payload of state.send is a Payload"),
    ("state.abort(3)", "argument client of state.abort is a client name"),
    ("state.read(c0, 0)", "an int from 1 to 65536, not 0"),
    ("state.send(c0, Payload(b'a'), writes=9)", "an int from 1 to 4, not 9"),
    ("state.read(c0, True)", "True is not a literal"),
    (f"state.send(c0, Payload(b'x', {MAX_PAYLOAD_SIZE + 1}))", "out of range"),
    ("state.send(c0, Payload(b'x', -1))", "Payload size -1 is out of range"),
    ("state.send(c0, Payload(b''))", "a Payload pattern is 1 to 64 bytes, not 0"),
    ("state.send(c0, Payload('x'))", "a Payload pattern is bytes"),
    ("state.send(c0, Payload(b'x', 3, 4))", "Payload(): too many positional arguments"),
    ("x = 1", "not a step of a conformance program"),
    ("x = state.connect()", "only a client name such as c0 can be assigned"),
    ("c1 = state.abort(c0)", "state.abort() returns no client"),
    ("state.abort(c0); state.connect()", "give each step as its own argument"),
    ("state.connect", "not a step of a conformance program"),
    ("state.abort(*[c0])", "is not a literal"),
    ("state.abort(**{'client': c0})", "**arguments are not literals"),
    ("__import__('os').system('true')", "not a step of a conformance program"),
    ("state.send(c0, state)", "state is not a literal"),
    ("state.send(c0, Payload(open('/etc/passwd').read()))", "is not a literal"),
    ("state.choose_scenario('ECHO-4')", "is an initializer: it must come before every rule"),
    ("state.read(c0, " + "-" * 900 + "1)", "nested too deeply to be a step"),
    ("state.read(c0, " + "-" * 100_000 + "1)", "a step is at most 1024 characters"),
]


@pytest.mark.parametrize(("line", "message"), INVALID_LINES)
def test_an_invalid_line_exits_3_with_one_line(line: str, message: str) -> None:
    # The bad line sits between two good ones; it is named by its number.
    done = replay("c0 = state.connect()", line, "state.abort(c0)")
    assert_one_line_error(done, 3, message)
    assert done.stderr.startswith("python -m spec.replay: invalid program: line 2, ")


@pytest.mark.parametrize(
    ("line", "message"),
    MORE_INVALID_LINES,
    ids=lambda text: text if len(text) < 60 else f"{text[:50]}...",
)
def test_more_invalid_lines_exit_3_with_one_line(
    line: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(
        [
            "--impl",
            SEED_UPPER,
            "--expect",
            "ECHO-5",
            "c0 = state.connect()",
            line,
            "state.abort(c0)",
        ]
    )
    out, err = capsys.readouterr()
    assert_one_line_error(subprocess.CompletedProcess([], status, out, err), 3, message)
    assert err.startswith("python -m spec.replay: invalid program: line 2, ")


def test_a_step_after_teardown_exits_3() -> None:
    done = replay(*CRASH, "state.teardown()", "state.connect()")
    assert_one_line_error(
        done,
        3,
        "line 4, state.connect(): state.teardown() ends the program: it must be the last line",
    )


def test_a_step_the_machine_does_not_run_exits_3() -> None:
    # The ECHO-1 machine never floods; the checker could not have printed this.
    done = replay("c0 = state.connect()", "state.flood(c0, Payload(b'x', 100000))", expect="ECHO-1")
    assert_one_line_error(
        done,
        3,
        "the ECHO-1 machine does not run state.flood here; it runs connect, drain, read, send",
    )


def test_a_step_whose_precondition_fails_exits_3() -> None:
    six = [f"c{i} = state.connect()" for i in range(EchoConformance.max_clients + 1)]
    done = replay(*six, expect="ECHO-1")
    assert_one_line_error(
        done, 3, "line 6, c5 = state.connect(): a precondition of state.connect is false"
    )


def test_a_malicious_line_runs_nothing(tmp_path: Path) -> None:
    witness = tmp_path / "ran"
    done = replay(f"__import__('os').system('touch {witness}')")
    assert_one_line_error(done, 3, "not a step")
    assert not witness.exists()


def test_an_invalid_program_fails_before_the_server_starts() -> None:
    nowhere = Target("impl", "no_such_module:NoServer")  # would fail to start
    with pytest.raises(InvalidProgram, match=r"^line 1, state\.fly\(\): state\.fly is not"):
        run_program(nowhere, "ECHO-5", ["state.fly()"])


# -- exit status 2: usage errors ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expect", "message"),
    [
        (
            ["--settle", "nan"],
            "ECHO-5",
            "argument --settle: give a finite number of seconds above 0",
        ),
        (["--settle", "inf"], "ECHO-5", "not inf"),
        (["--settle", "0"], "ECHO-5", "not 0"),
        (["--settle", "-1"], "ECHO-5", "not -1"),
        (["--settle", "soon"], "ECHO-5", "'soon' is not a number of seconds"),
        ([], "ECHO-99", "argument --expect: ECHO-99 is not a requirement the state machine checks"),
        ([], "ECHO-8", "ECHO-8 is not a requirement the state machine checks"),
        ([], "", "the following arguments are required: --expect"),
    ],
)
def test_a_usage_error_exits_2_with_one_line(args: list[str], expect: str, message: str) -> None:
    done = replay(*args, *CRASH, expect=expect)
    assert_one_line_error(done, 2, message)
    assert done.stderr.endswith("(see --help)\n")


def test_help_gives_the_exit_statuses_and_an_example() -> None:
    done = replay("--help", impl="", expect="")
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "Replay a conformance step program" in text
    for status in ("0  reproduced", "1  not reproduced", "2  usage error", "3  invalid program"):
        assert status in text
    assert (
        "python -m spec.replay --impl impl.seed_upper_server:SeedUpperServer \\\n"
        "      --expect ECHO-5 'c0 = state.connect()' 'state.abort(c0)'"
    ) in text


# -- what the replay accepts is what the checker prints ------------------------------------------


@settings(max_examples=200, deadline=None)
@given(payload=st.one_of(PAYLOADS, FLOODS, SMALL), writes=st.integers(1, 4))
def test_every_payload_the_checker_prints_is_replayed_as_itself(
    payload: Payload, writes: int
) -> None:
    program = ["c0 = state.connect()", f"state.send(c0, {payload!r}, writes={writes})"]
    step = parse_program(machine_for("ECHO-5"), program)[1]
    assert step.args[1] == payload and step.kwargs == {"writes": writes}


def test_the_steps_are_the_machines_rules_and_initializers() -> None:
    for requirement in ("ECHO-1", "ECHO-5"):
        machine = machine_for(requirement)
        marked = {
            name
            for name in dir(machine)
            if hasattr(getattr(machine, name), RULE_MARKER)
            or hasattr(getattr(machine, name), INITIALIZE_RULE_MARKER)
        }
        assert set(rules_of(machine)) == marked | {"teardown"} | FIXED_PROGRAM_RULES
    assert "choose_scenario" in rules_of(machine_for("ECHO-5"))


def test_every_int_and_str_argument_is_bounded() -> None:
    # The machine draws from spec.program.BOUNDS and replay holds a program to
    # them: an int or str argument without bounds would be taken unchecked.
    machine = machine_for("ECHO-5")
    for name, function in rules_of(machine).items():
        for argument, kind in typing.get_type_hints(function).items():
            if argument != "return" and kind in (int, str):
                assert argument in BOUNDS, (name, argument)


@pytest.mark.parametrize(
    ("rule", "arguments", "line"),
    [
        ("connect", {}, "c3 = state.connect()"),
        (
            "send",
            {"payload": Payload(b"a\x00", 9), "writes": 2},
            "state.send(c3, Payload(b'a\\x00', 9), writes=2)",
        ),
        ("read", {"size": 7}, "state.read(c3, 7)"),
        ("burst", {"n": 2, "payload": Payload(b"z")}, "state.burst(2, Payload(b'z'))"),
        ("teardown", {}, "state.teardown()"),
    ],
)
def test_a_recorded_step_reads_back_as_itself(
    rule: str, arguments: dict[str, object], line: str
) -> None:
    function = getattr(EchoConformance, rule)
    takes_client = "client" in inspect.signature(function).parameters
    written = format_step(
        function,
        {"client": Ref("c3"), **arguments} if takes_client else arguments,
        binds="c3" if rule == "connect" else "",
    )
    assert written == line
    step = parse(written)
    assert (step.rule, step.line) == (rule, line)
    assert step.client == ("c3" if takes_client or rule == "connect" else None)
    assert list(step.operands) + list(step.kwargs.values()) == list(arguments.values())


# -- readable diagnoses ----------------------------------------------------------------------------


def test_a_diagnosis_shows_a_readable_slice_of_each_buffer_and_keeps_it_all() -> None:
    junk = bytes(range(256)) * 256  # 64 KiB
    v = Violation(
        "ECHO-1", "junk", offset=65_535, expected=junk.upper(), received=junk, connection="c0"
    )
    text = v.describe()
    assert len(text) < 1000
    assert "  first divergent byte at offset 65535" in text.splitlines()
    assert f"  received: {junk[:SHOWN]!r} … (65536 bytes)" in text.splitlines()
    assert v.received == junk and v.expected == junk.upper()


def test_a_short_buffer_is_shown_whole() -> None:
    exact = b"a" * SHOWN
    text = Violation("ECHO-1", "x", offset=0, expected=exact.upper(), received=exact).describe()
    assert f"  received: {exact!r}" in text.splitlines()
    assert "…" not in text
