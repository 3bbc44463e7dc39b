"""`--echo-html`: one self-contained page with the matrix and every cell's evidence.

Design note
-----------
The page needs nothing but itself: inline CSS, inline SVG, no fonts,
images or scripts from anywhere.  Each matrix cell links to its evidence
(`#ev-T-ECHO-N`); CSS `:target` shows the evidence linked to, so it works
without JavaScript, and a few lines of script only open the first failure
when the page is opened without one and mark the chosen cell.  Ids are built
from indexes and requirement ids, never from target names.

Everything from a run is hostile text (a server's stderr, bytes it sent,
names and commands): it is escaped, and long text is cut to its head and
tail with its full size shown (the JSON report keeps all of it).  The page
is made to be shared, so paths of the machine it was made on are shortened
(`_local`): the run's directory goes, Python's own become ``<python>/...``.
"""

from __future__ import annotations

import os
import sys
import sysconfig
import time
from collections.abc import Sequence
from html import escape

from spec import matrix
from spec.requirements import BY_ID, IDS
from spec.sequence_diagram import svg

#: Characters of a long text shown: its head and its tail.
HEAD, TAIL = 12_000, 3_000
STDERR_MARK = "its stderr ends with:\n"
CELL_CLASS = {"PASS": "pass", "FAIL": "fail", "xfail": "xfail", "not judged": "skip"}

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#222}
h1{font-size:22px;margin:0 0 4px}
.meta{color:#666;margin:0 0 16px}
.verdict{display:inline-block;padding:2px 10px;border-radius:4px;font-weight:bold}
.v-pass{background:#d8f0d8;color:#1b5e20}.v-fail{background:#fbd9d9;color:#b71c1c}
.v-incomplete{background:#fff1c7;color:#7a5a00}
table.matrix{border-collapse:collapse;margin:16px 0}
.matrix th,.matrix td{border:1px solid #ccc;padding:4px 10px;text-align:left}
.matrix thead th{background:#f4f4f4;vertical-align:bottom}
.matrix thead small{font-weight:normal;color:#666;font-family:ui-monospace,monospace;
display:block;max-width:16em;overflow-wrap:anywhere}
.matrix tbody th{white-space:nowrap}
.matrix td.cell{text-align:center;font-weight:bold;padding:0}
.matrix td.cell a{display:block;padding:4px 10px;color:inherit;text-decoration:none}
.matrix td.cell a:hover,.matrix td.cell[aria-current=true]{outline:2px solid #333}
td.pass{background:#e6f4e6;color:#1b5e20}td.fail{background:#fde2e2;color:#b71c1c}
td.xfail{background:#fff1c7;color:#7a5a00}td.skip{background:#f1f1f1;color:#666}
.level{color:#666}
.evidence{display:none;border:1px solid #ccc;border-radius:6px;padding:12px 16px;margin:16px 0}
.evidence:target{display:block}
.evidence h2{font-size:17px;margin:0 0 6px}
.evidence h3{font-size:14px;margin:14px 0 4px}
pre{background:#f7f7f7;border:1px solid #e2e2e2;padding:8px;overflow:auto;max-height:28em;
white-space:pre-wrap;word-break:break-all;margin:0}
.cut{color:#b71c1c;font-style:italic}
.diagram{overflow:auto;border:1px solid #e2e2e2;background:#fff}
.hint{color:#666}
"""

SCRIPT = """
(function () {
  function mark() {
    document.querySelectorAll('td.cell').forEach(function (td) {
      td.setAttribute('aria-current', '#' + td.dataset.ev === location.hash ? 'true' : 'false');
    });
  }
  if (!location.hash) {
    var first = ['fail', 'xfail', 'skip', 'pass'].map(function (c) {
      return document.querySelector('td.' + c + ' a');
    }).filter(Boolean)[0];
    if (first) location.replace(first.getAttribute('href'));
  }
  window.addEventListener('hashchange', mark);
  mark();
  document.documentElement.classList.add('js');
})();
"""


def render(
    results: Sequence[matrix.TargetResult],
    *,
    strict: bool,
    not_run: str,
    title: str = "Echo server conformance",
) -> str:
    """The whole page."""
    verdict = matrix.overall(results, strict)
    scope = "all requirements" if strict else "MUST requirements"
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}: {verdict.upper()}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="meta">{len(results)} target{"s" * (len(results) != 1)}, '
        f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')} · overall "
        f'<span class="verdict v-{verdict}" id="overall">{verdict.upper()}</span> ({scope})</p>',
        _matrix(results, strict),
        '<p class="hint">Click a cell for its evidence: the diagnosis, the shrunk program as a '
        "sequence diagram, the replay command.</p>",
    ]
    for t, result in enumerate(results):
        for req_id in IDS:
            parts.append(_evidence(t, result, req_id, strict, not_run))
    parts += [f"<script>{SCRIPT}</script>", "</body></html>"]
    return "\n".join(parts) + "\n"


def _matrix(results: Sequence[matrix.TargetResult], strict: bool) -> str:
    head = "".join(
        f'<th scope="col">{escape(r.target.name)}<br><small>'
        f"{escape(_cut_line(_local(r.target.spec), 48))}<br>transform: "
        f"{escape(_cut_line(r.target.echo.name, 48))}</small></th>"
        for r in results
    )
    rows = []
    for req_id in IDS:
        req = BY_ID[req_id]
        cells = []
        for t, result in enumerate(results):
            entry = result.entries.get(req_id)
            shown = matrix.cell(entry, req_id, strict)
            ev = _id(t, req_id)
            tip = _local(matrix.first_line((entry or {}).get("detail", ""))) or shown
            cells.append(
                f'<td class="cell {CELL_CLASS[shown]}" data-ev="{ev}" '
                f'title="{escape(tip)}"><a href="#{ev}">{escape(shown)}</a></td>'
            )
        rows.append(
            f'<tr><th scope="row">{req_id} {escape(req.title)}</th>'
            f'<td class="level">{req.level.value}</td>{"".join(cells)}</tr>'
        )
    foot = "".join(
        f'<td class="verdict-cell v-{v}">{v.upper()}</td>'
        for v in (r.verdict(strict) for r in results)
    )
    return (
        f'<table class="matrix" id="matrix"><thead><tr><th>Requirement</th><th>Level</th>'
        f"{head}</tr></thead><tbody>{''.join(rows)}</tbody>"
        f'<tfoot><tr><th scope="row">verdict</th><td></td>{foot}</tr></tfoot></table>'
    )


def _evidence(t: int, result: matrix.TargetResult, req_id: str, strict: bool, not_run: str) -> str:
    req = BY_ID[req_id]
    entry = result.entries.get(req_id)
    shown = matrix.cell(entry, req_id, strict)
    name = escape(result.target.name)
    label = _local(result.target.label)
    out = [
        f'<section class="evidence {CELL_CLASS[shown]}" id="{_id(t, req_id)}">',
        f"<h2>{req_id} {escape(req.title)} ({req.level.value}) · {name}: {escape(shown)}</h2>",
        f"<p>{escape(req.text)}</p>",
        f'<p class="meta">target: <code>{escape(_cut_line(label, 300))}</code> · transform: '
        f"<code>{escape(_cut_line(result.target.echo.name, 100))}</code></p>",
    ]
    if entry is None:
        out.append(f"<p>{escape(not_run)}</p></section>")
        return "\n".join(out)
    if shown == "not judged":
        why = _local(matrix.why_not_judged(entry, not_run))
        out.append(f"<p><b>Not judged:</b> {escape(why)}</p>")
    detail = entry.get("detail", "") or ""
    diagnosis, _, stderr = detail.partition(STDERR_MARK)
    out += ["<h3>Diagnosis</h3>", _pre(diagnosis)]
    if stderr:
        out += ["<h3>Server stderr (its tail, where it died)</h3>", _pre(stderr)]
    if entry.get("verdict") == "fail":
        evidence = entry.get("evidence") or {}
        program = evidence.get("program") or entry.get("counterexample", "").splitlines()
        violation = evidence.get("violation")
        if violation is not None:  # its summary is the diagram's tooltip
            violation = {**violation, "summary": _local(violation.get("summary") or "")}
        out += [
            "<h3>Sequence diagram</h3>",
            '<p class="hint">Arrows from the server show the echo and EOF a conforming '
            "server owes; the red mark is where this one departed.</p>",
            f'<div class="diagram">{svg(program, violation, result.target.echo)}</div>',
        ]
        if program:
            out += [f"<h3>Shrunk program ({len(program)} steps)</h3>", _pre("\n".join(program))]
        if entry.get("replay"):
            out += ["<h3>Replay it (exit 0 = reproduced)</h3>", _pre(entry["replay"])]
    environment = entry.get("environment") or {}
    if environment.get("mode"):  # how the kernel could witness this check (spec.drivers.witness)
        out.append(
            f'<p class="meta">mode: {escape(str(environment["mode"]))}; weakens: '
            f"{escape(str(environment.get('weakens', '')))}</p>"
        )
    seconds = entry.get("seconds")
    if isinstance(seconds, int | float):
        out.append(f'<p class="meta">{seconds:.2f} s</p>')
    out.append("</section>")
    return "\n".join(out)


def _id(t: int, req_id: str) -> str:
    return f"ev-{t}-{req_id}"


def _local(text: str) -> str:
    """`text` without this machine's paths: relative to the run's directory, and
    Python's own (its interpreter, standard library, site-packages) as <python>."""
    paths = {sysconfig.get_paths()[k]: f"<python>/{k}" for k in ("purelib", "platlib")}
    paths[sysconfig.get_paths()["stdlib"]] = "<python>"
    shortened = [(f"{path}/", f"{short}/") for path, short in paths.items()]
    shortened.append((sys.executable, "python"))
    if os.getcwd() != "/":
        shortened.append((f"{os.getcwd()}/", ""))
    for path, short in sorted(shortened, key=lambda p: -len(p[0])):
        text = text.replace(path, short)
    return text


def _pre(text: str) -> str:
    """A <pre> of `text`, its middle cut out when it is long, the size shown."""
    text = _local(text)
    if len(text) <= HEAD + TAIL:
        return f"<pre>{escape(text)}</pre>"
    cut = len(text) - HEAD - TAIL
    return (
        f'<pre>{escape(text[:HEAD])}<span class="cut">\n… {cut:,} of {len(text):,} '
        f"characters cut here (the JSON report has them all) …\n</span>"
        f"{escape(text[-TAIL:])}</pre>"
    )


def _cut_line(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
