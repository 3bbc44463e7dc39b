"""pytest integration: check echo servers with `pytest --server-cmd`, `--impl` or `--targets`.

    pytest --server-cmd "./myserver --port {port}"        # any language
    pytest --impl mypkg.server:MyServer                    # a steppable Python class
    pytest --impl impl.select_server:SelectEchoServer --server-cmd "node echo.js {port}" \\
           -n auto --report report.json --html report.html
    pytest --targets examples/targets.toml -n auto -k seed-upper

Installed (``pip install .``), the plugin is found through the ``pytest11``
entry point, so this works from any directory; it does nothing unless a
target is given.  With a target and no test paths on the command line,
pytest runs only `spec/test_conformance.py`: one test per target and
requirement (ids like ``[seed-upper-ECHO-5]``, so ``-k`` selects either and
``-n auto`` spreads them over cores).  The summary is a matrix, requirements
down and targets across (`spec.matrix`, which also defines each target's
verdict and the JSON report's shapes).

Exit status 0 only when every target passed every MUST requirement, each
one judged; a requirement that was not judged (deselected, masked by
another failure, inconclusive) is a skip and leaves the run "incomplete",
exit status 1.  A failed SHOULD is reported as xfail unless ``--strict``
(pytest's own strict mode, which this plugin extends: SHOULD requirements
then count too).  Works with pytest-xdist: the workers send each outcome to
the controller in the test report's user_properties, and only the
controller writes ``--report`` and ``--html``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis.database import ExampleDatabase

from spec import matrix, profiles
from spec.checker import DEFAULT_BUDGET, Outcome
from spec.drivers.base import DEFAULT_SETTLE
from spec.example_db import ExampleDbError, example_database, with_database
from spec.model import Violation
from spec.targets import (
    Target,
    TargetError,
    impl,
    load_targets_file,
    named,
    positive_seconds,
    server_cmd,
)

CONFORMANCE_TESTS = Path(__file__).with_name("test_conformance.py")
_PROPERTY = "conformance-outcome"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("conformance", "echo server conformance")
    # Both append to one list, so the targets keep the command line's order.
    group.addoption(
        "--server-cmd",
        action="append",
        dest="conformance_cli_targets",
        default=[],
        type=lambda value: ("cmd", value),
        metavar="COMMAND",
        help="check this server command, any language; '{port}' is replaced by a free port. "
        "Repeat for several targets; each is named after its program (echo_server, "
        "select_server-2); to choose names, use --targets",
    )
    group.addoption(
        "--impl",
        action="append",
        dest="conformance_cli_targets",
        default=[],
        type=lambda value: ("impl", value),
        metavar="MODULE:CLASS",
        help="check this steppable Python server class in-process (repeatable; named after "
        "its module)",
    )
    group.addoption(
        "--targets",
        metavar="TOML",
        help="check the targets listed in this TOML file: [[target]] tables with name, "
        "cmd or impl, and an optional settle (see examples/targets.toml)",
    )
    group.addoption(
        "--settle",
        default=str(DEFAULT_SETTLE),
        metavar="SECONDS",
        help="seconds a process server gets for anything awaited, a positive number "
        f"(default {DEFAULT_SETTLE:g}; a target's own settle in --targets wins)",
    )
    group.addoption(
        "--budget",
        default=str(DEFAULT_BUDGET),
        metavar="SECONDS",
        help="seconds each requirement's generated programs (and their shrinking) may take "
        f"in all; the check then reports what it has (default {DEFAULT_BUDGET:g})",
    )
    group.addoption(
        "--report",
        metavar="PATH",
        help="write the verdicts as JSON (one target: {target, verdict, requirements}; "
        "several: {verdict, targets: {NAME: ...}}; see spec/matrix.py). The verdict is pass "
        "only if every MUST was judged and passed, else fail or incomplete (exit status 1). "
        "Write path options as --report=PATH: a separate PATH that exists would be taken by "
        "pytest as its rootdir",
    )
    group.addoption(
        "--html",
        metavar="PATH",
        help="write one self-contained HTML page: the matrix, and per cell the diagnosis, "
        "the shrunk program as a sequence diagram, the replay command",
    )
    group.addoption(
        "--regressions",
        metavar="DIR",
        help="write a standalone pytest file per failure into DIR (a directory; created)",
    )
    group.addoption(
        "--example-db",
        metavar="URL|DIR",
        help="Hypothesis' example database to replay failures from and save them to: "
        "redis://HOST:PORT/N (shared between machines; needs the 'redis' extra) or a "
        "directory. It is used even under the CI profile, which otherwise has none",
    )


_TARGETS = pytest.StashKey[list[Target]]()
_START_FAILURES = pytest.StashKey[dict[str, str]]()
_EXAMPLE_DB = pytest.StashKey[ExampleDatabase]()


def conformance_targets(config: pytest.Config) -> list[Target]:
    return config.stash.get(_TARGETS, [])


def start_failures(config: pytest.Config) -> dict[str, str]:
    """Targets (by name) that could not start in this process, and why."""
    return config.stash.setdefault(_START_FAILURES, {})


def hypothesis_settings(config: pytest.Config) -> settings:
    """The run's Hypothesis settings: its profile, with --example-db's database.

    Resolved when a check starts, by name: a conftest.py collected late (as
    when pytest runs from another directory) may load a profile of its own
    after --hypothesis-profile was applied.
    """
    name = config.getoption("hypothesis_profile", None)
    base = settings.get_profile(name) if name else settings()
    return with_database(base, config.stash.get(_EXAMPLE_DB, None))


def settle_for(config: pytest.Config, target: Target) -> float:
    return target.settle or float(config.getoption("--settle"))


@pytest.hookimpl(trylast=True)  # after Hypothesis' plugin has loaded --hypothesis-profile
def pytest_configure(config: pytest.Config) -> None:
    try:
        targets = _targets(config)
    except TargetError as e:
        raise pytest.UsageError(str(e)) from None
    config.stash[_TARGETS] = targets
    if not targets:
        return
    is_controller = not hasattr(config, "workerinput")
    if is_controller:
        _check_output_paths(config)
    if config.getoption("hypothesis_profile", None) is None:
        profiles.load_default()
    db = config.getoption("--example-db")
    if db is not None:
        try:
            config.stash[_EXAMPLE_DB] = example_database(db, check=is_controller)
        except ExampleDbError as e:
            raise pytest.UsageError(str(e)) from None
    config.pluginmanager.register(ConformanceSession(config, targets), "conformance-session")
    if config.args_source is not pytest.Config.ArgsSource.ARGS:
        config.args = [str(CONFORMANCE_TESTS)]


def _targets(config: pytest.Config) -> list[Target]:
    config.option.settle = positive_seconds(config.getoption("--settle"), "--settle")
    config.option.budget = positive_seconds(config.getoption("--budget"), "--budget")
    targets = [
        server_cmd(value) if kind == "cmd" else impl(value)
        for kind, value in config.getoption("conformance_cli_targets")
    ]
    path = config.getoption("--targets")
    if path is not None:
        targets = load_targets_file(path) + targets
    return named(targets)


def _check_output_paths(config: pytest.Config) -> None:
    """Fail before the run, not after it, when a report cannot be written."""
    for option in ("--report", "--html"):
        path = config.getoption(option)
        if path is None:
            continue
        if not path.strip() or Path(path).is_dir():
            raise pytest.UsageError(f"{option} {path!r} should be a file path")
        _writable(option, Path(path).parent)
    directory = config.getoption("--regressions")
    if directory is not None:
        d = Path(directory)
        if not directory.strip() or (d.exists() and not d.is_dir()):
            raise pytest.UsageError(
                f"--regressions {directory!r} is not a directory; give a "
                "directory for the regression files"
            )
        while not d.exists():
            d = d.parent
        _writable("--regressions", d)


def _writable(option: str, directory: Path) -> None:
    where = directory or Path(".")
    if not where.is_dir():
        raise pytest.UsageError(f"{option}: directory {str(where)!r} does not exist")
    try:
        with tempfile.NamedTemporaryFile(dir=where, prefix=".conformance-probe-"):
            pass
    except OSError as e:
        raise pytest.UsageError(
            f"{option}: cannot write in {str(where)!r} ({e.strerror or e})"
        ) from None


def record(node: pytest.Item, target: Target, outcome: Outcome) -> None:
    """Attach an outcome to a test's report; the controller collects it."""
    entry = {
        "target": target.name,
        "requirement": outcome.requirement,
        **outcome.as_report(),
        "evidence": evidence(outcome.program, outcome.violation),
        "findings": [
            {**f.as_report(), "evidence": evidence(f.program, f.violation)}
            for f in outcome.findings
        ],
    }
    node.user_properties.append((_PROPERTY, json.dumps(entry, default=str)))


def evidence(program: list[str], v: Violation | None) -> matrix.Evidence:
    """What the HTML sequence diagram is drawn from: the program and the violation."""
    violation: matrix.ViolationEvidence | None = (
        None
        if v is None
        else {
            "requirement": v.requirement,
            "summary": v.headline,
            "offset": v.offset,
            "connection": v.connection,
            "expected_hex": None if v.expected is None else bytes(v.expected).hex(),
            "received_hex": None if v.received is None else bytes(v.received).hex(),
        }
    )
    return {"program": list(program), "violation": violation}


class ConformanceSession:
    """Collects outcomes (from every xdist worker), prints the matrix, writes the reports."""

    def __init__(self, config: pytest.Config, targets: list[Target]) -> None:
        self.config = config
        self.targets = targets
        self.entries: dict[str, dict[str, matrix.Entry]] = {t.name: {} for t in targets}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call":
            return
        for name, value in report.user_properties:
            if name == _PROPERTY and isinstance(value, str):  # record() wrote it: JSON text
                data = json.loads(value)
                target, req_id = data.pop("target"), data.pop("requirement")
                self.entries.setdefault(target, {})[req_id] = data

    @property
    def strict(self) -> bool:
        return bool(self.config.getoption("strict"))

    def results(self) -> list[matrix.TargetResult]:
        return [matrix.TargetResult(t, self.entries.get(t.name, {})) for t in self.targets]

    def not_run(self) -> str:
        """Why a requirement with no outcome has none."""
        for flag, option in (("-k", "keyword"), ("-m", "markexpr")):
            value = self.config.getoption(option, "")
            if value:
                return f"not run: deselected by {flag} {value!r} (or the run stopped early)"
        return "not run: the run stopped before it"

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if hasattr(self.config, "workerinput"):
            return
        tr = terminalreporter
        results = self.results()
        tr.section("conformance")
        for line in matrix.terminal_lines(results, self.strict):
            tr.write_line(line)
        for result in results:
            missing = {
                req_id: why
                for req_id, why in result.not_judged(self.not_run()).items()
                if matrix.counts(req_id, self.strict)
            }
            by_reason: dict[str, list[str]] = {}
            for req_id, why in missing.items():
                by_reason.setdefault(why, []).append(req_id)
            for why, ids in by_reason.items():
                tr.write_line(f"{result.target.name}: not judged {', '.join(ids)}: {why}")
        for result in results:
            for req_id, entry in result.found_elsewhere().items():
                _write_found_elsewhere(tr, result.target.name, req_id, entry)
        tr.write_line(f"verdict: {matrix.overall(results, self.strict).upper()}")

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if hasattr(self.config, "workerinput"):
            return
        results = self.results()
        if matrix.overall(results, self.strict) != "pass" and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        path = self.config.getoption("--report")
        if path:
            report = matrix.report(results, self.strict, self.not_run())
            _write(Path(path), json.dumps(report, indent=2, default=str) + "\n")
        path = self.config.getoption("--html")
        if path:
            from spec.report_html import render

            _write(Path(path), render(results, strict=self.strict, not_run=self.not_run()))


def _write_found_elsewhere(
    tr: pytest.TerminalReporter, target: str, req_id: str, entry: matrix.Entry
) -> None:
    """A failure another requirement's programs found: its own test passed or did not run."""
    tr.write_line("")
    tr.write_line(
        f"{target}: {req_id} FAILS, found by the programs that check {entry.get('found_by')}:",
        red=True,
    )
    for line in entry.get("detail", "").splitlines()[1:]:
        tr.write_line(f"  {line}")
    program = entry.get("counterexample", "").splitlines()
    tr.write_line(f"  program ({len(program)} steps):")
    for line in program:
        tr.write_line(f"      {line}")
    tr.write_line(f"  replay it: {entry.get('replay', '')}")


def _write(path: Path, text: str) -> None:
    """Write whole or not at all: a reader never sees half a report."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
