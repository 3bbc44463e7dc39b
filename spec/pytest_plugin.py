"""The conformance run: targets, the session that collects outcomes, the reports.

    pytest --echo-server-cmd "./myserver --port {port}"        # any language
    pytest --echo-impl mypkg.server:MyServer                    # a steppable Python class
    pytest --echo-impl impl.select_server:SelectEchoServer \\
           --echo-server-cmd "node echo.js {port}" -n auto \\
           --echo-report=report.json --echo-html=report.html
    pytest --echo-targets examples/targets.toml -n auto -k seed-upper

The options and the pytest11 entry point are `spec.plugin`, which imports
this module only when a target is given.  With a target and no test paths
on the command line, pytest runs only `spec/test_conformance.py`: one test
per target and requirement (ids like ``[seed-upper-ECHO-5]``, so ``-k``
selects either and ``-n auto`` spreads them over cores).  The summary is a
matrix, requirements down and targets across (`spec.matrix`, which also
defines each target's verdict and the JSON report's shapes).

Exit status 0 only when every target passed every MUST requirement, each
one judged; a requirement that was not judged (deselected, masked by
another failure, inconclusive) is a skip and leaves the run "incomplete",
exit status 1.  A failed SHOULD is reported as xfail unless
``--echo-strict`` (SHOULD requirements then count too).  Works with
pytest-xdist: the workers send each outcome to the controller in the test
report's user_properties, and only the controller writes the reports.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis.database import ExampleDatabase

from spec import matrix, profiles
from spec._hypothesis import current_profile
from spec.checker import Outcome
from spec.drivers.base import DEFAULT_SETTLE
from spec.example_db import ExampleDbError, example_database, with_database
from spec.gradescope import Grading, GradingError, load_grading
from spec.gradescope import results as gradescope_results
from spec.model import Violation
from spec.plugin import Options, options
from spec.requirements import IDS
from spec.shard import part_of
from spec.targets import (
    Target,
    TargetError,
    impl,
    load_targets_file,
    named,
    server_cmd,
)
from spec.verdicts import Overall

_PROPERTY = "conformance-outcome"


_TARGETS = pytest.StashKey[list[Target]]()
_START_FAILURES = pytest.StashKey[dict[str, str]]()
_EXAMPLE_DB = pytest.StashKey[ExampleDatabase]()
_PREVIOUS_PROFILE = pytest.StashKey[str]()
_GRADING = pytest.StashKey[Grading]()
_SESSION = "echo-conformance-session"


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
    return target.settle or options(config).settle or DEFAULT_SETTLE


def configure(config: pytest.Config, opts: Options) -> None:
    """Set up a run with targets (`spec.plugin` calls this only then)."""
    try:
        targets = _targets(opts)
    except TargetError as e:
        raise pytest.UsageError(str(e)) from None
    config.stash[_TARGETS] = targets
    is_controller = not hasattr(config, "workerinput")
    if is_controller:
        _check_output_paths(opts)
        if opts.gradescope is not None:
            try:
                config.stash[_GRADING] = load_grading(opts.targets)
            except GradingError as e:
                raise pytest.UsageError(str(e)) from None
    if config.getoption("hypothesis_profile", None) is None:
        # Loaded for this run only: unconfigure() puts the previous profile back.
        config.stash[_PREVIOUS_PROFILE] = current_profile()
        profiles.load_default()
    if opts.example_db is not None:
        try:
            config.stash[_EXAMPLE_DB] = example_database(opts.example_db, check=is_controller)
        except ExampleDbError as e:
            raise pytest.UsageError(str(e)) from None
    config.pluginmanager.register(ConformanceSession(config, targets), _SESSION)


def unconfigure(config: pytest.Config) -> None:
    """Undo configure(): the session plugin, the stash, the Hypothesis profile."""
    session = config.pluginmanager.get_plugin(_SESSION)
    if session is not None:
        config.pluginmanager.unregister(session)
    previous = config.stash.get(_PREVIOUS_PROFILE, None)
    if previous is not None:
        with contextlib.suppress(Exception):  # a profile since unregistered: keep the current
            settings.load_profile(previous)
    for key in (_TARGETS, _START_FAILURES, _EXAMPLE_DB, _PREVIOUS_PROFILE, _GRADING):
        with contextlib.suppress(KeyError):
            del config.stash[key]  # type: ignore[misc]


def _targets(opts: Options) -> list[Target]:
    targets = [
        server_cmd(value) if kind == "cmd" else impl(value) for kind, value in opts.cli_targets
    ]
    if opts.targets is not None:
        targets = load_targets_file(opts.targets) + targets
    # Each target is judged by its own transform (a targets file's), else the run's.
    return named(replace(t, transform=t.transform or opts.transform) for t in targets)


def _check_output_paths(opts: Options) -> None:
    """Fail before the run, not after it, when a report cannot be written."""
    for option, path in (
        ("--echo-report", opts.report),
        ("--echo-html", opts.html),
        ("--echo-gradescope", opts.gradescope),
    ):
        if path is None:
            continue
        if not path.strip() or Path(path).is_dir():
            raise pytest.UsageError(f"{option} {path!r} should be a file path")
        _writable(option, Path(path).parent)
    directory = opts.regressions
    if directory is not None:
        d = Path(directory)
        if not directory.strip() or (d.exists() and not d.is_dir()):
            raise pytest.UsageError(
                f"--echo-regressions {directory!r} is not a directory; give a "
                "directory for the regression files"
            )
        while not d.exists():
            d = d.parent
        _writable("--echo-regressions", d)


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
        self.started = time.monotonic()

    @pytest.hookimpl(tryfirst=True)  # before --junitxml reads the properties
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for name, value in report.user_properties:
            if report.when != "call":
                break
            if name == _PROPERTY and isinstance(value, str):  # record() wrote it: JSON text
                data = json.loads(value)
                target, req_id = data.pop("target"), data.pop("requirement")
                self.entries.setdefault(target, {})[req_id] = data
        # The JSON is for this session only, not a property for --junitxml (which reads
        # the teardown report's); a worker sends it on to the controller.
        if not hasattr(self.config, "workerinput"):
            report.user_properties = [p for p in report.user_properties if p[0] != _PROPERTY]

    @property
    def strict(self) -> bool:
        return options(self.config).strict

    def results(self) -> list[matrix.TargetResult]:
        return [matrix.TargetResult(t, self.entries.get(t.name, {})) for t in self.targets]

    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        """--echo-shard K/N: deselect the tests of the other parts (spec/shard.py)."""
        shard = options(config).shard
        if shard is None:
            return
        part, count = shard
        index = {t.name: i for i, t in enumerate(self.targets)}
        keep: list[pytest.Item] = []
        others: list[pytest.Item] = []
        for item in items:
            callspec = getattr(item, "callspec", None)
            params = callspec.params if callspec is not None else {}
            target = params.get("target")
            if isinstance(target, Target) and target.name in index:
                mine = part_of(index[target.name], params["req_id"], count) == part
                (keep if mine else others).append(item)
            else:
                keep.append(item)
        if others:
            config.hook.pytest_deselected(items=others)
            items[:] = keep

    def verdict(self, results: list[matrix.TargetResult]) -> Overall:
        """The run's verdict; of a part (--echo-shard), over the tests of that part only."""
        shard = options(self.config).shard
        if shard is None:
            return matrix.overall(results, self.strict)
        part, count = shard
        cells = [
            matrix.cell(result.entries.get(req_id), req_id, self.strict)
            for t, result in enumerate(results)
            for req_id in IDS
            if matrix.counts(req_id, self.strict) and part_of(t, req_id, count) == part
        ]
        if "FAIL" in cells:
            return Overall.FAIL
        return Overall.INCOMPLETE if "not judged" in cells else Overall.PASS

    def not_run(self) -> str:
        """Why a requirement with no outcome has none."""
        shard = options(self.config).shard
        if shard is not None:
            return f"not run: another part's (--echo-shard {shard[0]}/{shard[1]}), or deselected"
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
        for line in _mode_lines(results):
            tr.write_line(line)
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
        opts = options(self.config)
        if self.verdict(results) != Overall.PASS and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        path = opts.report
        if path:
            report: dict[str, object] = dict(matrix.report(results, self.strict, self.not_run()))
            if opts.shard is not None:  # what spec.merge needs to join the parts
                report["shard"] = {
                    "part": opts.shard[0],
                    "of": opts.shard[1],
                    "strict": self.strict,
                    "ran": {name: sorted(entries) for name, entries in self.entries.items()},
                }
            _write(Path(path), json.dumps(report, indent=2, default=str) + "\n")
        path = opts.html
        if path:
            from spec.report_html import render

            _write(Path(path), render(results, strict=self.strict, not_run=self.not_run()))
        if opts.gradescope:
            graded = gradescope_results(
                results,
                self.config.stash.get(_GRADING, Grading()),
                strict=self.strict,
                not_run=self.not_run(),
                seconds=time.monotonic() - self.started,
                verdict=matrix.overall(results, self.strict),
            )
            _write(Path(opts.gradescope), json.dumps(graded, indent=2) + "\n")


def _mode_lines(results: list[matrix.TargetResult]) -> list[str]:
    """How the servers run as processes were run and judged, and what that weakens."""
    modes = {
        str(env["mode"]): env
        for result in results
        for entry in result.entries.values()
        if isinstance(env := entry.get("environment") or {}, dict) and env.get("mode")
    }
    lines = []
    for mode, env in modes.items():
        lines.append(f"mode: {mode}")
        if str(env.get("weakens", "")).startswith("nothing"):
            continue
        lines.append(f"  weakens: {env.get('weakens')}")
        lines.append(f"  to do better: {env.get('better')}")
    return lines


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
