"""Does the model name a fault of known kind by its own requirement?  Writes docs/diagnosis.md.

    python bench/diagnosis.py                    # 20,000 payloads, seed 1
    python bench/diagnosis.py --cases 2000 --seed 7 --page ''   # print, write nothing

Each payload (random bytes, or text of ASCII letters, digits and Latin-1 and
UTF-8 bytes) is spoiled two ways, and `spec.model.diagnose` is asked, as the
checker asks it once a server is at rest (``settled=True``):

- by a *wrong transform*, bytes changed where they stand, as real servers do:
  Latin-1 text upper-cased (``ß`` as ``SS``, ``ÿ`` as ``?``), UTF-8 decoded with
  ``errors="replace"`` (U+FFFD), with ``surrogateescape``, and a server that
  upper-cases checked as a plain echo (``--echo-transform identity``).  Each
  should be ECHO-1.
- by a *stream fault*, the uppercase echo with bytes lost, inserted, moved to
  the end, duplicated, short chunks swapped, or lost with stray bytes after
  the end.  Each should be ECHO-2.  Two more are ambiguous by nature and shown
  apart: a block overwritten in place by random bytes (each byte "came back
  as another at its own offset", ECHO-1's words) or by earlier echo.

The table counts the requirement named per kind; a payload whose spoiled echo
equals the right one is not counted.
"""

from __future__ import annotations

import argparse
import collections
import random
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _page import Page

from spec.model import IDENTITY, UPPER, diagnose

TEXT = b"abcxyz 019\xe9\xc3\xa9\xdf\xff\xa0\xf3"


def _latin1(b: bytes) -> bytes:
    return b.decode("latin-1").upper().encode("latin-1", "replace")


def _replace(b: bytes) -> bytes:
    return b.decode("utf-8", "replace").upper().encode("utf-8")


def _surrogateescape(b: bytes) -> bytes:
    return b.decode("utf-8", "surrogateescape").upper().encode("utf-8", "surrogateescape")


#: Wrong transforms: (name, what the server sends for `sent`, the transform it is judged by).
TRANSFORMS: list[tuple[str, Callable[[bytes], bytes], object]] = [
    ("Latin-1 upper-cased", _latin1, UPPER),
    ("UTF-8 decoded, errors='replace'", _replace, UPPER),
    ("UTF-8 decoded, surrogateescape", _surrogateescape, UPPER),
    ("upper-cased, checked as identity", UPPER, IDENTITY),
]

STREAM_FAULTS = [
    "lost",
    "inserted",
    "moved to the end",
    "duplicated",
    "short chunks swapped",
    "lost, stray bytes after the end",
]
AMBIGUOUS = ["overwritten by random bytes", "overwritten by earlier echo"]


def payload(rng: random.Random) -> bytes:
    n = rng.randint(2, 60)
    if rng.random() < 0.4:
        return rng.randbytes(n)
    return bytes(rng.choice(TEXT) for _ in range(n))


def stream_fault(rng: random.Random, kind: str, echo: bytes) -> bytes:
    k = rng.randrange(len(echo))
    rest = len(echo) - k
    if kind == "lost":
        return echo[:k] + echo[k + rng.randint(1, rest) :]
    if kind == "inserted":
        return echo[:k] + rng.randbytes(rng.randint(1, 6)) + echo[k:]
    if kind == "moved to the end":
        n = rng.randint(1, max(1, rest // 2))
        return echo[:k] + echo[k + n :] + echo[k : k + n]
    if kind == "duplicated":
        j = rng.randrange(0, k + 1)
        return echo[:k] + echo[j : j + rng.randint(1, 8)] + echo[k:]
    if kind == "short chunks swapped":
        a, b = rng.randint(1, 3), rng.randint(1, 3)
        return echo[:k] + echo[k + a : k + a + b] + echo[k : k + a] + echo[k + a + b :]
    if kind == "lost, stray bytes after the end":
        return echo[:k] + echo[k + rng.randint(1, 3) :] + rng.randbytes(rng.randint(1, 5))
    n = rng.randint(1, rest)
    if kind == "overwritten by random bytes":
        return echo[:k] + rng.randbytes(n) + echo[k + n :]
    j = rng.randrange(0, k + 1)  # overwritten by earlier echo
    block = echo[j : j + n]
    return echo[:k] + block + echo[k + len(block) :]


def measure(cases: int, seed: int) -> dict[tuple[str, str], collections.Counter[str]]:
    rng = random.Random(seed)
    named: dict[tuple[str, str], collections.Counter[str]] = collections.defaultdict(
        collections.Counter
    )
    for _ in range(cases):
        sent = payload(rng)
        for name, server, judged_by in TRANSFORMS:
            got = server(sent)
            v = diagnose(sent, got, settled=True, transform=judged_by)  # type: ignore[arg-type]
            if v is not None:
                named[("wrong transform (ECHO-1)", name)][v.requirement] += 1
        for kind in STREAM_FAULTS + AMBIGUOUS:
            got = stream_fault(rng, kind, UPPER(sent))
            v = diagnose(sent, got, settled=True) if got != UPPER(sent) else None
            if v is not None:
                group = "stream fault (ECHO-2)" if kind in STREAM_FAULTS else "ambiguous"
                named[(group, kind)][v.requirement] += 1
    return named


def table(named: dict[tuple[str, str], collections.Counter[str]]) -> str:
    lines = [
        "| fault | kind | cases | ECHO-1 | ECHO-2 | other | named by its own requirement |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    order = [("wrong transform (ECHO-1)", name) for name, _, _ in TRANSFORMS]
    order += [("stream fault (ECHO-2)", kind) for kind in STREAM_FAULTS]
    order += [("ambiguous", kind) for kind in AMBIGUOUS]
    for group, kind in order:
        counts = named[(group, kind)]
        total = sum(counts.values())
        if not total:
            continue
        own = {"wrong transform (ECHO-1)": "ECHO-1", "stream fault (ECHO-2)": "ECHO-2"}.get(group)
        other = total - counts["ECHO-1"] - counts["ECHO-2"]
        right = f"{100 * counts[own] / total:.1f} %" if own else "(either)"
        lines.append(
            f"| {group} | {kind} | {total} | {counts['ECHO-1']} | {counts['ECHO-2']} | "
            f"{other} | {right} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=20000, help="payloads (default 20000)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument(
        "--page", default="diagnosis.md", help="page under docs/ to write ('' writes nothing)"
    )
    args = parser.parse_args(argv)
    page = Page("How the model names faults of known kind", argv=sys.argv)
    body = "\n\n".join(
        [
            f"{args.cases} payloads (seed {args.seed}), each spoiled by every kind below; "
            "`spec.model.diagnose(sent, received, settled=True)` names the requirement. "
            "Why each kind is what it is: the docstring of `bench/diagnosis.py`.",
            table(measure(args.cases, args.seed)),
        ]
    )
    if args.page:
        page.write(args.page, body)
    else:
        print(page.header() + "\n" + body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
