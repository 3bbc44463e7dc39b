"""`--echo-shard K/N` and `python -m spec.merge`: parts of a run, joined, give the whole run."""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from runs import PY, ROOT, pytest_run

from spec.merge import MergeError, merge
from spec.requirements import IDS
from spec.shard import part_of

SEED_UPPER = "impl.seed_upper_server:SeedUpperServer"
REFERENCE = "impl.select_server:SelectEchoServer"


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_every_test_is_in_exactly_one_part_and_the_parts_are_even(count: int) -> None:
    parts = Counter(part_of(t, r, count) for t in range(5) for r in IDS)
    assert set(parts) == set(range(1, count + 1))
    assert max(parts.values()) - min(parts.values()) <= 1


def _part(part: int, of: int, ran: dict[str, list[str]], name: str = "a") -> dict[str, Any]:
    return {
        "target": REFERENCE,
        "name": name,
        "kind": "impl",
        "verdict": "incomplete",
        "not_judged": {},
        "requirements": {r: {"verdict": "pass"} for r in IDS},
        "shard": {"part": part, "of": of, "strict": False, "ran": ran},
    }


@pytest.mark.parametrize(
    ("reports", "message"),
    [
        ([_part(1, 2, {"a": ["ECHO-1"]})], "give parts 1 to 2 of one run"),
        ([_part(1, 2, {"a": []}), _part(1, 2, {"a": []})], "the parts given are 1/2, 1/2"),
        ([_part(1, 2, {"a": ["ECHO-1"]}), _part(2, 2, {"a": ["ECHO-1"]})], "by two parts"),
        ([_part(1, 2, {"a": []}), _part(2, 2, {"b": []}, name="b")], "checked other targets"),
        ([{"target": "x", "name": "a", "requirements": {}}], "written with --echo-shard"),
    ],
)
def test_parts_that_do_not_fit_are_refused(reports: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(MergeError, match=message):
        merge(reports)


def _comparable(report: dict[str, Any]) -> dict[str, Any]:
    """What must be equal: verdicts, and every judged entry but its timing."""
    return {
        "verdict": report["verdict"],
        "targets": {
            name: {
                "verdict": t["verdict"],
                "not_judged": sorted(t["not_judged"]),
                "requirements": {
                    r: {k: v for k, v in e.items() if k != "seconds"}
                    for r, e in t["requirements"].items()
                    if r not in t["not_judged"]
                },
            }
            for name, t in report["targets"].items()
        },
    }


def test_three_parts_merged_equal_one_run(tmp_path: Path) -> None:
    env = {**os.environ, "CI": "true"}  # the ci profile: derandomized, the same programs
    common = (
        "--echo-impl", SEED_UPPER, "--echo-impl", REFERENCE,
        "-k", "ECHO-1 and not ECHO-10 or seed_upper and (ECHO-4 or ECHO-5)",
    )  # fmt: skip
    single = pytest_run(*common, f"--echo-report={tmp_path / 'single.json'}", env=env)
    assert "verdict: FAIL" in single.stdout, single.stdout + single.stderr
    for k in (1, 2, 3):
        part = pytest_run(
            *common, f"--echo-shard={k}/3", f"--echo-report={tmp_path / f'part{k}.json'}", env=env
        )
        # 5: this selection leaves part 3 nothing (pytest: no tests); its report is written.
        assert part.returncode in (0, 1, 5), part.stdout + part.stderr
    merged = subprocess.run(
        [
            PY,
            "-m",
            "spec.merge",
            *(str(tmp_path / f"part{k}.json") for k in (1, 2, 3)),
            "-o",
            str(tmp_path / "all.json"),
            "--html",
            str(tmp_path / "all.html"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert merged.returncode == 1, merged.stdout + merged.stderr  # seed_upper fails
    assert "verdict: FAIL" in merged.stdout
    whole = json.loads((tmp_path / "all.json").read_text())
    assert "shard" not in whole
    assert _comparable(whole) == _comparable(json.loads((tmp_path / "single.json").read_text()))
    assert "seed_upper_server" in (tmp_path / "all.html").read_text()


def test_a_bad_shard_is_a_usage_error() -> None:
    done = pytest_run("--echo-impl", REFERENCE, "--echo-shard=4/3", timeout=60)
    assert done.returncode == 4
    assert "argument --echo-shard: should be K/N with 1 <= K <= N, not '4/3'" in done.stderr


@pytest.mark.parametrize("transform", ["identity", "mymodule:rot13", "upper"])
def test_a_merged_report_keeps_each_targets_transform(transform: str) -> None:
    """A MODULE:FUNC need not import where the parts are merged: its name is kept."""
    parts = [_part(1, 2, {"a": IDS[:5]}), _part(2, 2, {"a": IDS[5:]})]
    for p in parts:
        p["transform"] = transform
    (result,), _ = merge(parts)
    assert result.target.echo.name == transform
