"""The mutation score of impl/select_server.py, with the conformance checker as the test.

    python bench/mutation/run.py                 # about 40 minutes on 2 cores
    python bench/mutation/run.py --workdir /tmp/mut --children 2

Clones the current commit into WORKDIR (default: a new temporary directory),
makes a virtual environment there without the project installed (mutmut must
import the mutated copy, not this checkout), adds the one test mutmut runs
(`test_mutation_target.py` here: every requirement against the reference,
ECHO-1..7 derandomized) and runs mutmut with `--children` workers.  Then it
writes docs/mutation.md: the counts, which requirement killed how many
mutants (the test's kill log), and every mutant that lived: with the reason a
reader gave in judged.toml, or with its diff.

A surviving mutant that changes nothing but a log call's text or arguments is
counted apart, found from its diff: the protocol cannot observe a log line.
Any other survivor is judged by a reader, in judged.toml (matched by its
function and the lines it adds); one not found there is shown, with its diff,
as unexplained.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _page import ROOT, Page

MUTMUT = "mutmut==3.8.1"
PACKAGES = [MUTMUT, "hypothesis>=6.100", "pytest>=8.0", "pytest-xdist", "psutil"]
TARGET = "impl/select_server.py"
#: Appended to the clone's pyproject.toml: what mutmut mutates and runs.
MUTMUT_CONFIG = """
[tool.mutmut]
source_paths = ["impl/"]
only_mutate = ["impl/select_server.py"]
also_copy = ["spec/", "conftest.py"]
pytest_add_cli_args_test_selection = ["tests/test_mutation_target.py"]
pytest_add_cli_args = ["-p", "no:cacheprovider", "-p", "no:xdist"]
timeout_multiplier = 5.0
timeout_constant = 5.0
"""
#: mutmut's words for a mutant's fate, in the order the page lists them.
KILLED, TIMEOUT, SURVIVED, NO_TESTS = "killed", "timeout", "survived", "no tests"
#: A changed line that only logs: the call, or a continuation line of its arguments.
LOG_CALL = re.compile(r"^\s*(log|logger|logging)\.\w+\(")
#: Survivors a reader has judged (equivalent, or within a bound), with the reason.
JUDGED = Path(__file__).with_name("judged.toml")


@dataclass
class Mutant:
    name: str
    status: str
    diff: str = ""
    killed_by: str = ""

    @property
    def function(self) -> str:
        mangled = self.name.split(".")[-1].rsplit("__mutmut_", 1)[0]
        return mangled.removeprefix("x_").replace("xǁ", "").replace("ǁ", ".")

    def added(self) -> str:
        """The lines the mutant adds, stripped: with the function, its key in judged.toml."""
        return "\n".join(
            line[1:].strip()
            for line in self.diff.splitlines()
            if line.startswith("+") and not line.startswith("+++")
        )

    def only_logs(self) -> bool:
        """Every line the mutant changes is inside a logging call."""
        depth = 0  # unclosed parentheses of a log call, counted on the original lines
        changed: list[bool] = []
        for line in self.diff.splitlines():
            if not line or line.startswith(("+++", "---", "@@")):
                continue
            mark, text = line[0], line[1:]
            in_log = depth > 0 or bool(LOG_CALL.match(text))
            if mark == "+" and changed and changed[-1]:
                in_log = True  # replaces a line of a log call
            if mark in "+-":
                changed.append(in_log)
            if mark != "+" and in_log:
                depth += text.count("(") - text.count(")")
        return bool(changed) and all(changed)


def run(argv: list[str], cwd: Path, env: dict[str, str] | None = None, check: bool = True) -> str:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    if check and done.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return done.stdout


def prepare(work: Path) -> tuple[Path, dict[str, str]]:
    """The clone with the mutmut test and config, and the environment of its venv."""
    repo = work / "repo"
    run(["git", "clone", "-q", str(ROOT), str(repo)], cwd=work)
    run([sys.executable, "-m", "venv", str(work / "venv")], cwd=work)
    env = dict(os.environ, VIRTUAL_ENV=str(work / "venv"), MUT_KILL_LOG=str(repo / "kills.jsonl"))
    env["PATH"] = f"{work / 'venv' / 'bin'}{os.pathsep}{env['PATH']}"
    env.pop("PYTHONPATH", None)
    pip = [str(work / "venv" / "bin" / "pip"), "install", "-q", "--disable-pip-version-check"]
    run([*pip, *PACKAGES], cwd=work, env=env)
    (repo / "tests" / "test_mutation_target.py").write_text(
        (Path(__file__).parent / "test_mutation_target.py").read_text()
    )
    with (repo / "pyproject.toml").open("a") as f:
        f.write(MUTMUT_CONFIG)
    return repo, env


def results(repo: Path, env: dict[str, str]) -> list[Mutant]:
    mutmut = str(Path(env["VIRTUAL_ENV"]) / "bin" / "mutmut")
    mutants = []
    for line in run([mutmut, "results", "--all", "true"], cwd=repo, env=env).splitlines():
        name, _, status = line.strip().rpartition(": ")
        if name:
            mutants.append(Mutant(name, status))
    for m in mutants:
        if m.status != KILLED:
            m.diff = run([mutmut, "show", m.name], cwd=repo, env=env, check=False)
            m.diff = "\n".join(x for x in m.diff.splitlines() if not x.startswith("# "))
    kills = repo / "kills.jsonl"
    by_name = {m.name: m for m in mutants}
    if kills.exists():
        for line in kills.read_text().splitlines():
            entry = json.loads(line)
            if entry.get("mutant") in by_name:
                by_name[entry["mutant"]].killed_by = entry["req"]
    return mutants


def judged() -> dict[tuple[str, str], dict[str, str]]:
    """(function, added lines) -> {"kind", "why"}, from judged.toml."""
    with JUDGED.open("rb") as f:
        return {(j["function"], j["added"]): j for j in tomllib.load(f)["judged"]}


def page_body(mutants: list[Mutant], children: int) -> str:
    count = collections.Counter(m.status for m in mutants)
    survivors = [m for m in mutants if m.status == SURVIVED]
    log_only = [m for m in survivors if m.only_logs()]
    reasons = judged()
    verdict = {m.name: reasons.get((m.function, m.added())) for m in survivors}
    equivalent = [
        m
        for m in survivors
        if m not in log_only and (verdict[m.name] or {}).get("kind") == "equivalent"
    ]
    bounded = [
        m
        for m in survivors
        if m not in log_only and (verdict[m.name] or {}).get("kind") == "within-bound"
    ]
    others = [m for m in survivors if m not in log_only and not verdict[m.name]]
    run_at_all = len(mutants) - count[NO_TESTS]
    caught = count[KILLED] + count[TIMEOUT]
    observable = run_at_all - len(log_only) - len(equivalent)
    lines = [
        f"mutmut {MUTMUT.split('==')[1]} mutates `{TARGET}`; the only test is "
        "`bench/mutation/test_mutation_target.py`: every requirement against the reference, "
        "ECHO-1..7 in-process, derandomized, not shrunk (30 programs of up to 15 steps), "
        f"ECHO-8..10 measured on the server run as a process. {children} mutants ran at a time.",
        "",
        "| mutants | count |",
        "|---|---:|",
        f"| generated | {len(mutants)} |",
        f"| killed | {count[KILLED]} |",
        f"| timed out (killed: the checker never finished) | {count[TIMEOUT]} |",
        f"| never run by the test (no test calls the function) | {count[NO_TESTS]} |",
        f"| survived, changing only a log call | {len(log_only)} |",
        f"| survived, equivalent: the protocol cannot observe them (judged) | {len(equivalent)} |",
        f"| survived, within a bound a requirement allows (judged) | {len(bounded)} |",
        f"| survived, unexplained | {len(others)} |",
    ]
    lines += [
        f"| {s} | {n} |"
        for s, n in sorted(count.items())
        if s not in (KILLED, TIMEOUT, NO_TESTS, SURVIVED)
    ]
    lines += [
        "",
        f"**Score: {caught} of {observable} "
        f"({100 * caught / max(observable, 1):.1f}%)** of the mutants the test runs that "
        "change what the server does (all but the log-only and the equivalent ones); by "
        f"mutmut's own count {caught} of {len(mutants)} "
        f"({100 * caught / max(len(mutants), 1):.1f}%). Judgements are a reader's, in "
        "`bench/mutation/judged.toml`, matched by function and added lines.",
        "",
        "## What killed them",
        "",
        "The first requirement whose check failed, in the test's order (cheapest first):",
        "",
        "| requirement | mutants |",
        "|---|---:|",
    ]
    killers = collections.Counter(
        m.killed_by or "(not logged)" for m in mutants if m.status in (KILLED, TIMEOUT)
    )
    lines += [f"| {req} | {n} |" for req, n in sorted(killers.items())]
    lines += ["", "## Unexplained survivors", ""]
    if not others:
        lines += ["None.", ""]
    for m in others:
        lines += [f"### `{m.function}`", "", "```diff", m.diff.strip(), "```", ""]
    for title, group in (("Equivalent", equivalent), ("Within a bound", bounded)):
        if group:
            lines += [f"## {title}", "", "| function | the mutant adds | why |", "|---|---|---|"]
            for m in group:
                why = (verdict[m.name] or {}).get("why", "")
                added = m.added().replace("\n", " ").replace("|", "\\|")
                lines.append(f"| `{m.function}` | `{added}` | {why} |")
            lines.append("")
    never = [m for m in mutants if m.status == NO_TESTS]
    if never:
        lines += [
            "## Never run",
            "",
            "Functions the test never calls in its own process (the command line):",
            "",
        ]
        for fn, n in sorted(collections.Counter(m.function for m in never).items()):
            lines.append(f"- `{fn}`: {n}")
        lines.append("")
    if log_only:
        lines += ["## Log-only survivors", ""]
        for fn, n in sorted(collections.Counter(m.function for m in log_only).items()):
            lines.append(f"- `{fn}`: {n}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workdir",
        type=Path,
        help="where to clone and run (default: a new "
        "temporary directory, kept for mutmut's own results)",
    )
    parser.add_argument(
        "--children", type=int, default=2, help="mutants run at a time (default: 2)"
    )
    args = parser.parse_args(argv)
    if args.children < 1:
        parser.error("--children must be at least 1")
    page = Page("Mutation score", argv=sys.argv if argv is None else [__file__, *argv])
    work = args.workdir or Path(tempfile.mkdtemp(prefix="mutation."))
    work.mkdir(parents=True, exist_ok=True)
    if (work / "repo").exists():
        parser.error(f"{work / 'repo'} exists: give a new or empty --workdir")
    repo, env = prepare(work)
    print(f"mutating {TARGET} in {repo}", file=sys.stderr, flush=True)
    mutmut = str(work / "venv" / "bin" / "mutmut")
    subprocess.run(
        ["nice", "-n", "10", mutmut, "run", "--max-children", str(args.children)],
        cwd=repo,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    mutants = results(repo, env)
    if not mutants:
        sys.exit(f"mutmut produced no results; see {repo}")
    page.write("mutation.md", page_body(mutants, args.children))
    print(f"mutmut's own results: {repo}/mutants; kill log: {env['MUT_KILL_LOG']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
