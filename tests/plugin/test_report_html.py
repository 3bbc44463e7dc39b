"""The HTML report and its sequence diagrams, without a browser.

What a browser shows is tested in `test_report_browser.py`; here, what the
page is made of: escaping, truncation, one diagram per failure, and the
diagram's reading of programs.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from spec.matrix import TargetResult
from spec.report_html import render
from spec.sequence_diagram import divergence, events, mark_violation, parse_step, svg
from spec.targets import Target

HOSTILE = "<script>alert('x')</script>&<img src=x onerror=alert(1)>\"'"


def _entry(
    verdict: str,
    detail: str,
    program: list[str],
    violation: dict | None = None,
    replay: str = "python -m spec.replay ...",
) -> dict:
    return {
        "level": "MUST",
        "verdict": verdict,
        "detail": detail,
        "counterexample": "\n".join(program),
        "replay": replay,
        "seconds": 1.5,
        "evidence": {"program": program, "violation": violation},
    }


def _page() -> str:
    junk = "".join(chr(32 + i % 90) for i in range(2_500_000)) + "\nTHE-END"
    hostile = _entry(
        "fail",
        f"ECHO-5: the server died{HOSTILE}; its stderr ends with:\n"
        f"Traceback {HOSTILE}\nValueError: boom",
        ["c0 = state.connect()", "state.abort(c0)"],
        {
            "requirement": "ECHO-5",
            "summary": HOSTILE,
            "offset": None,
            "connection": None,
            "expected_hex": None,
            "received_hex": None,
        },
        replay=f"python -m spec.replay {HOSTILE}",
    )
    big = _entry(
        "fail",
        junk,
        ["c0 = state.connect()", "state.send(c0, Payload(b'a'), writes=1)"],
        {
            "requirement": "ECHO-1",
            "summary": "untransformed",
            "offset": 0,
            "connection": "c0",
            "expected_hex": "41",
            "received_hex": "61",
        },
    )
    evil = Target("cmd", f"{HOSTILE} {{port}}", name="evil")
    results = [
        TargetResult(
            evil,
            {
                "ECHO-5": hostile,
                "ECHO-1": big,
                "ECHO-2": _entry("pass", "no violation found", []),
                "ECHO-4": {"verdict": "not-run", "masked_by": "ECHO-5"},
            },
        ),
        TargetResult(
            Target("impl", "impl.select_server:SelectEchoServer", name="reference"),
            {"ECHO-1": _entry("pass", "no violation found", [])},
        ),
    ]
    return render(results, strict=False, not_run="not run: deselected")


def test_the_page_escapes_everything_and_needs_nothing_else() -> None:
    page = _page()
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(" in page
    assert page.count("<script>") == 1  # the page's own
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)  # nothing fetched
    assert "@import" not in page and "url(" not in page


def test_a_huge_diagnosis_is_cut_with_its_size_shown() -> None:
    page = _page()
    assert len(page) < 200_000
    assert re.search(r"… [\d,]+ of 2,500,008 characters cut here", page)
    assert "THE-END" in page  # the tail, where a server's last words are


def test_every_failure_has_its_diagram_and_every_cell_its_evidence() -> None:
    page = _page()
    assert page.count('<svg xmlns="http://www.w3.org/2000/svg" class="sequence"') == 2
    for t, req in [(0, "ECHO-1"), (0, "ECHO-5"), (1, "ECHO-10")]:
        assert f'href="#ev-{t}-{req}"' in page and f'id="ev-{t}-{req}"' in page
    assert "Server stderr (its tail, where it died)" in page
    assert "not-run: masked by ECHO-5" in page
    assert 'class="verdict-cell v-fail">FAIL' in page
    assert 'class="verdict-cell v-incomplete">INCOMPLETE' in page


def test_program_lines_are_read_never_run() -> None:
    send = parse_step("state.send(c0, Payload(b'ab'), writes=2)")
    assert send is not None and send.rule == "send"
    connect = parse_step("c3 = state.connect()")
    assert connect is not None and connect.client == "c3"
    flood = parse_step("state.flood(c1, Payload(b'\\x01', 4194304))")
    assert flood is not None
    assert flood.operands[0].length == 4194304 and flood.operands[0].head == b"\x01"
    for line in [
        "__import__('os').system('touch /tmp/pwned')",
        "state.send(c0, open('x'))",
        "state.read(c0, 1); import os",
        "x =",
    ]:
        assert parse_step(line) is None
    _, rows = events(["__import__('os').system('x')"])
    assert rows[0].label == "__import__('os').system('x')" and rows[0].src is None


def test_the_diagram_shows_each_step_with_its_bytes() -> None:
    program = [
        "c0 = state.connect()",
        "state.send(c0, Payload(b'ab'), writes=2)",
        "state.flood(c0, Payload(b'\\x01', 4194304))",
        "state.read(c0, 100)",
        "state.half_close(c0)",
        "state.burst(2, Payload(b'a'))",
        "c3 = state.connect()",
        "state.abort(c3)",
        "state.teardown()",
    ]
    lanes, rows = events(program)
    assert lanes == ["c0", "c1", "c2", "c3", "server"]
    labels = [(r.src, r.dst, r.label) for r in rows]
    assert ("c0", "server", "b'ab' (2 B, 2 writes)") in labels
    assert ("server", "c0", "echo b'AB' (2 B)") in labels
    assert ("c0", "server", "flood b'\\x01'… (up to 4 MiB), not reading") in labels
    assert ("server", "c0", "read ≤100 B: b'\\x01'… (100 B)") in labels
    assert ("c0", "server", "FIN (half-close)") in labels
    assert ("c3", "server", "RST (abort)") in labels
    assert ("server", "c1", "EOF (FIN)") in labels
    # At teardown the flooder gets the rest of its echo, then EOF.
    assert labels[-2:] == [("server", "c0", "echo (4.0 MiB)"), ("server", "c0", "EOF (FIN)")]


def test_the_first_divergent_byte_is_marked_on_its_echo() -> None:
    program = [
        "c0 = state.connect()",
        "state.send(c0, Payload(b'abc'), writes=1)",
        "state.send(c0, Payload(b'xyz'), writes=1)",
    ]
    violation = {
        "requirement": "ECHO-1",
        "summary": "byte came back untransformed",
        "offset": 4,
        "connection": "c0",
        "expected_hex": b"ABCXYZ".hex(),
        "received_hex": b"ABCXyZ".hex(),
    }
    assert divergence(violation) == (
        "✗ first divergent byte at offset 4: expected b'YZ', received b'yZ'"
    )
    _, rows = events(program)
    mark_violation(rows, violation)
    marked = [r for r in rows if r.failed]
    assert len(marked) == 1 and marked[0].echo == ("c0", 3, 6)
    drawing = svg(program, violation)
    ET.fromstring(drawing)  # well-formed
    assert 'class="divergence"' in drawing and "offset 4" in drawing


def test_a_crash_is_marked_on_the_server() -> None:
    violation = {
        "requirement": "ECHO-5",
        "summary": "poll() raised <ConnectionResetError>",
        "offset": None,
        "connection": None,
    }
    drawing = svg(["c0 = state.connect()", "state.abort(c0)"], violation)
    ET.fromstring(drawing)
    assert "✗ ECHO-5: poll() raised &lt;ConnectionResetError&gt;" in drawing
    assert svg([], violation).count("<svg") == 1  # a measured failure: no program, still drawn


def test_each_cell_names_the_mode_it_was_judged_in() -> None:
    entry = _entry("not-run", "not judged in this mode (pass by what it could see): ...", [])
    entry["environment"] = {
        "mode": f"host network (autotuned buffers), process group, at rest by the clock{HOSTILE}",
        "weakens": "no sock_diag (refused): ECHO-6 is not judged",
    }
    page = render(
        [TargetResult(Target("cmd", "x {port}", name="x"), {"ECHO-6": entry})],
        strict=False,
        not_run="not run: deselected",
    )
    assert "mode: host network (autotuned buffers), process group, at rest by the clock" in page
    assert "weakens: no sock_diag (refused): ECHO-6 is not judged" in page
    assert "<img src=x" not in page


def test_the_diagram_owes_the_targets_own_transform() -> None:
    from spec.model import IDENTITY
    from spec.sequence_diagram import events

    program = ["c0 = state.connect()", "state.send(c0, Payload(b'hello'), writes=1)"]
    assert "echo b'hello' (5 B)" in [e.label for e in events(program, IDENTITY)[1]]
    assert "echo b'HELLO' (5 B)" in [e.label for e in events(program)[1]]


def test_the_diagram_draws_every_rule_of_the_machine() -> None:
    """A rule the diagram does not know would be drawn as a bare note, its echo
    owed nowhere: every rule of the state machine has its drawing."""
    from spec.plans import RULES
    from spec.sequence_diagram import _Drawing

    rules = set().union(*RULES.values())
    drawn = {name.removeprefix("rule_") for name in vars(_Drawing) if name.startswith("rule_")}
    assert rules and rules <= drawn, rules - drawn


def test_a_race_is_drawn_with_its_end() -> None:
    _, rows = events(
        ["c0 = state.connect()", "state.send_and_abort(c0, Payload(b'ab'))", "state.teardown()"]
    )
    labels = [(r.src, r.dst, r.label) for r in rows]
    assert ("c0", "server", "b'ab' (2 B) + RST at once (abort)") in labels
    assert not [r for r in rows if r.style == "echo"], labels


def test_a_drawing_costs_counts_not_the_bytes_drawn() -> None:
    """Floods are drawn from their sizes: 40 of 64 MiB draw at once (a lane that
    held the bytes took 285 MiB for one), and lines that cannot be drawn are notes."""
    flood = "state.flood(c0, Payload(b'a', 67108864))"
    _, rows = events(["c0 = state.connect()", *[flood] * 40, "state.teardown()"])
    assert rows[-1].label == "echo b'A'… (2560 MiB)", rows[-1]
    for line in [f"state.read(c0, {'9' * 400})", "state.burst(300, Payload(b'a'))"]:
        _, rows = events(["c0 = state.connect()", line])
        assert rows[-1].label == line and rows[-1].src is None, rows
