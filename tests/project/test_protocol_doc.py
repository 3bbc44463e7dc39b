"""spec/PROTOCOL.md stays true to the code it describes.

1. The requirement table between ``<!-- requirements:begin -->`` and
   ``<!-- requirements:end -->`` is generated from spec/requirements.py and must
   match `render_table()` byte for byte.  To regenerate it after changing the data:

       python tests/project/test_protocol_doc.py

2. Every requirement has its section, in table order, headed exactly
   ``## ECHO-N: Title``, which restates the requirement as ``> **LEVEL.** text``
   and names the state-machine rules that exercise it on one line,
   ``Rules exercised: `connect`, `send`, ...`` (``none`` for a measured requirement),
   equal to spec.machine.RULES.

3. Seed lines.  A quoted seed line is a Markdown list item of the form

       - first server: `CODE` — why it breaks the requirement
       - complete server: `CODE` — ...

   ("first server" is impl/seed_echo_server.py, "complete server"
   impl/seed_upper_server.py).  Only the first backticked span of such an item is
   checked; the prose after it may quote anything.  CODE must occur within one code
   line of that reproduction, with all whitespace removed from both and the
   reproduction's comments and docstrings left out (so a fragment quoted only in a
   docstring does not count).  ``...`` in CODE elides: its pieces must occur in order
   on that one line (the reproductions add a ``timeout`` to ``select.select``).
   Each piece must also occur in the seed tutorial itself (whitespace removed), when
   the tutorial is available.  A server may be quoted in the section of ECHO-N only
   if its reproduction's docstring names ECHO-N among its verified defects; a
   section says "neither seed server breaks it" exactly when neither docstring
   names its requirement.
"""

from __future__ import annotations

import ast
import io
import re
import sys
import tokenize
from pathlib import Path

import pytest

#: The repository (this file also runs as a script, where `runs` is not importable).
ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "spec" / "PROTOCOL.md"
SEED = ROOT.parent / "shared" / "seed" / "000_b80f858ad387c3c6.txt"
SERVERS = {
    "first server": ROOT / "impl" / "seed_echo_server.py",
    "complete server": ROOT / "impl" / "seed_upper_server.py",
}
BEGIN = "<!-- requirements:begin -->"
END = "<!-- requirements:end -->"
NEITHER = "neither seed server breaks it"

_SEED_ITEM = re.compile(r"^\s*[-*] (first server|complete server): `([^`]+)`", re.MULTILINE)
_HEADING = re.compile(r"^## (.+)$", re.MULTILINE)
_REQ_HEADING = re.compile(r"^(ECHO-\d+): (.+)$")
_RULES_LINE = re.compile(r"^Rules exercised: (.+)$", re.MULTILINE)


def _requirements():
    if str(ROOT) not in sys.path:  # run as a script from anywhere
        sys.path.insert(0, str(ROOT))
    from spec.requirements import REQUIREMENTS

    return REQUIREMENTS


# -- the generated table ---------------------------------------------------------------


def render_table() -> str:
    """The lines between the markers (exclusive), each ending in a newline."""
    lines = [
        "<!-- Generated from spec/requirements.py; do not edit by hand. "
        "Regenerate with: python tests/project/test_protocol_doc.py -->",
        "| ID | level | requirement |",
        "|----|-------|-------------|",
    ]
    for r in _requirements():
        cell = f"**{r.title}.** {r.text}".replace("|", "\\|")
        lines.append(f"| {r.id} | {r.level.value} | {cell} |")
    return "".join(line + "\n" for line in lines)


def _split(doc: str) -> tuple[str, str, str]:
    """(before and including the begin marker line, the block, the end marker line on)."""
    begin = doc.index(BEGIN + "\n") + len(BEGIN) + 1
    end = doc.index("\n" + END, begin) + 1
    return doc[:begin], doc[begin:end], doc[end:]


def regenerate(path: Path = DOC) -> bool:
    """Rewrite the table block in place; True if it changed."""
    doc = path.read_text(encoding="utf-8")
    head, block, tail = _split(doc)
    new = render_table()
    if block == new:
        return False
    path.write_text(head + new + tail, encoding="utf-8")
    return True


# -- reading the document ----------------------------------------------------------------


def _doc() -> str:
    return DOC.read_text(encoding="utf-8")


def _sections(doc: str) -> dict[str, str]:
    """Each `## ` heading's text -> its body, up to the next `## ` heading."""
    marks = list(_HEADING.finditer(doc))
    return {
        m.group(1).strip(): doc[m.end() : marks[i + 1].start() if i + 1 < len(marks) else len(doc)]
        for i, m in enumerate(marks)
    }


def _requirement_sections(doc: str) -> dict[str, tuple[str, str]]:
    """ECHO-N -> (title, body)."""
    found = {}
    for heading, body in _sections(doc).items():
        m = _REQ_HEADING.match(heading)
        if m:
            found[m.group(1)] = (m.group(2), body)
    return found


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def code_lines(path: Path) -> list[str]:
    """The reproduction's physical lines without comments or docstrings, whitespace removed."""
    source = path.read_text(encoding="utf-8")
    skip: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            skip.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    lines = source.splitlines()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            row, col = tok.start
            lines[row - 1] = lines[row - 1][:col]
    return [_squash(line) for number, line in enumerate(lines, 1) if number not in skip]


def _in_order(pieces: list[str], line: str) -> bool:
    at = 0
    for piece in pieces:
        found = line.find(piece, at)
        if found < 0:
            return False
        at = found + len(piece)
    return True


def _pieces(code: str) -> list[str]:
    return [p for p in (_squash(part) for part in code.split("...")) if p]


def _docstring_ids(path: Path) -> set[str]:
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    return set(re.findall(r"\bECHO-\d+\b", docstring))


# -- the tests -------------------------------------------------------------------------------


def test_table_matches_the_requirement_data() -> None:
    doc = _doc()
    assert doc.count(BEGIN) == 1 and doc.count(END) == 1
    _, block, _ = _split(doc)
    assert block == render_table(), (
        "the requirement table in spec/PROTOCOL.md is out of date; "
        "regenerate it with: python tests/project/test_protocol_doc.py"
    )


def test_every_requirement_has_its_section() -> None:
    sections = _requirement_sections(_doc())
    reqs = _requirements()
    assert list(sections) == [r.id for r in reqs], "one `## ECHO-N: Title` per requirement"
    for r in reqs:
        title, body = sections[r.id]
        assert title == r.title, f"{r.id}: heading title {title!r}, data says {r.title!r}"
        assert f"> **{r.level.value}.** {r.text}\n" in body, (
            f"{r.id}: the section must restate the requirement as '> **LEVEL.** text'"
        )


def test_rules_exercised_match_the_machine() -> None:
    from spec.machine import RULES

    for req_id, (_, body) in _requirement_sections(_doc()).items():
        lines = _RULES_LINE.findall(body)
        assert len(lines) == 1, f"{req_id}: exactly one 'Rules exercised:' line"
        named = set(re.findall(r"`(\w+)`", lines[0]))
        if req_id in RULES:
            rules = sorted(RULES[req_id])
            assert named == set(rules), f"{req_id}: the machine runs {rules}"
        else:
            assert lines[0].startswith("none") and not named, f"{req_id} is measured, not run"


def _seed_items() -> list[tuple[str, str, str]]:
    """(requirement, server, code) for every quoted seed line in a requirement section."""
    items = []
    for req_id, (_, body) in _requirement_sections(_doc()).items():
        items += [(req_id, m.group(1), m.group(2)) for m in _SEED_ITEM.finditer(body)]
    return items


def test_seed_lines_are_quoted() -> None:
    items = _seed_items()
    assert {server for _, server, _ in items} == set(SERVERS), "both servers are quoted"
    # Every seed item of the document sits in a requirement section.
    assert len(_SEED_ITEM.findall(_doc())) == len(items)


@pytest.mark.parametrize(("req_id", "server", "code"), _seed_items() if DOC.exists() else [])
def test_seed_line_occurs_in_the_reproduction(req_id: str, server: str, code: str) -> None:
    pieces = _pieces(code)
    assert pieces, f"empty seed quote in {req_id}"
    path = SERVERS[server]
    assert any(_in_order(pieces, line) for line in code_lines(path)), (
        f"{req_id}: `{code}` is not a code line of {path.relative_to(ROOT)} ({server})"
    )
    assert req_id in _docstring_ids(path), (
        f"{req_id}: {path.relative_to(ROOT)}'s docstring lists no {req_id} defect"
    )


@pytest.mark.skipif(not SEED.exists(), reason=f"the seed tutorial is not at {SEED}")
def test_seed_lines_occur_in_the_seed_tutorial() -> None:
    seed = _squash(SEED.read_text(encoding="utf-8"))
    missing = [
        code for _, _, code in _seed_items() if not all(piece in seed for piece in _pieces(code))
    ]
    assert not missing, f"not in the seed tutorial: {missing}"


def test_neither_server_exactly_when_no_docstring_names_it() -> None:
    named = set().union(*(_docstring_ids(path) for path in SERVERS.values()))
    quoted = {req_id for req_id, _, _ in _seed_items()}
    for req_id, (_, body) in _requirement_sections(_doc()).items():
        says_neither = NEITHER in body.lower()
        assert says_neither == (req_id not in named), (
            f"{req_id}: say '{NEITHER}' exactly when neither reproduction names {req_id}"
        )
        if says_neither:
            assert req_id not in quoted


def test_code_lines_leave_out_docstrings_and_comments() -> None:
    lines = code_lines(SERVERS["first server"])
    assert any("data=r.recv(1024)" in line for line in lines)
    assert not any("sendsbackthebytesasreceived" in line for line in lines)  # docstring
    assert not any("Receivethedata" in line for line in lines)  # comment


if __name__ == "__main__":
    print(f"{DOC.relative_to(ROOT)}: " + ("table regenerated" if regenerate() else "up to date"))


def test_the_readme_counts_the_zoo() -> None:
    from impl.zoo import DEFECTS

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"a zoo of {len(DEFECTS)} classic defects" in readme
