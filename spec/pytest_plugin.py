"""pytest integration: check any echo server with `pytest --server-cmd` or `--impl`.

    pytest --server-cmd "./myserver --port {port}"        # any language
    pytest --impl mypkg.server:MyServer                    # a steppable Python class
    pytest --impl impl.select_server:SelectEchoServer -n auto --report report.json

Installed (``pip install .``), the plugin is found through the ``pytest11``
entry point, so this works from any directory; it does nothing unless a
target is given.  With a target and no test paths on the command line,
pytest runs only `spec/test_conformance.py`: one test per requirement, so the
output reads as a conformance table, which is printed again at the end.  Exit
status 0 when every MUST passes; a failed SHOULD is reported as xfail unless
``--strict`` (pytest's own strict mode, which this plugin extends: SHOULD
requirements then count too).  Works with pytest-xdist: the workers send each
outcome to the controller in the test report's user_properties, and only the
controller writes ``--report``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spec import profiles
from spec.checker import DEFAULT_SETTLE, Outcome
from spec.requirements import BY_ID, IDS
from spec.targets import Target, TargetError, impl, server_cmd

CONFORMANCE_TESTS = Path(__file__).with_name("test_conformance.py")
_PROPERTY = "conformance-outcome"

def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("conformance", "echo server conformance")
    group.addoption("--server-cmd", metavar="COMMAND",
                    help="check this server command; '{port}' is replaced by a free port")
    group.addoption("--impl", metavar="MODULE:CLASS",
                    help="check this steppable Python server class in-process")
    group.addoption("--settle", type=float, default=DEFAULT_SETTLE, metavar="SECONDS",
                    help="seconds a process server gets for anything awaited "
                    f"(default {DEFAULT_SETTLE:g})")
    group.addoption("--report", metavar="PATH", help="write the verdicts as JSON")
    group.addoption("--regressions", metavar="DIR",
                    help="write a standalone pytest file per failure into DIR")


_TARGET = pytest.StashKey["Target | None"]()


def conformance_target(config: pytest.Config) -> Target | None:
    return config.stash.get(_TARGET, None)


def pytest_configure(config: pytest.Config) -> None:
    cmd, cls = config.getoption("--server-cmd"), config.getoption("--impl")
    if cmd and cls:
        raise pytest.UsageError("give --server-cmd or --impl, not both")
    if config.getoption("--settle") <= 0:
        raise pytest.UsageError("--settle must be a positive number of seconds")
    try:
        target = server_cmd(cmd) if cmd else impl(cls) if cls else None
    except TargetError as e:
        raise pytest.UsageError(str(e)) from None
    config.stash[_TARGET] = target
    if target is None:
        return
    config.pluginmanager.register(ConformanceSession(config, target), "conformance-session")
    if config.args_source is not pytest.Config.ArgsSource.ARGS:
        config.args = [str(CONFORMANCE_TESTS)]
    if config.getoption("hypothesis_profile", None) is None:
        profiles.load_default()


def record(node: pytest.Item, outcome: Outcome) -> None:
    """Attach an outcome to a test's report; the controller collects it."""
    node.user_properties.append((_PROPERTY, json.dumps({
        "requirement": outcome.requirement, **outcome.as_report()})))


class ConformanceSession:
    """Collects outcomes (from every xdist worker), prints the table, writes the report."""

    def __init__(self, config: pytest.Config, target: Target) -> None:
        self.config = config
        self.target = target
        self.outcomes: dict[str, dict] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call":
            return
        for name, value in report.user_properties:
            if name == _PROPERTY:
                data = json.loads(value)
                self.outcomes[data.pop("requirement")] = data

    def verdict(self) -> str:
        """"pass" only if something was judged and every requirement that
        counts (MUST, or all with --strict) among those run passed."""
        strict = self.config.getoption("strict")
        counted = [o for req_id, o in self.outcomes.items()
                   if strict or BY_ID[req_id].level.value == "MUST"]
        if not self.outcomes or any(o["verdict"] != "pass" for o in counted):
            return "fail"
        return "pass"

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.outcomes:
            return
        tr = terminalreporter
        tr.section(f"conformance of {self.target.label}")
        for req_id in IDS:
            r = BY_ID[req_id]
            o = self.outcomes.get(req_id, {"verdict": "not-run", "seconds": 0.0})
            tr.write_line(f"{req_id:8} {r.level.value:6} {r.title:17} "
                          f"{o['verdict'].upper():8} {o['seconds']:7.2f} s")
        scope = "all requirements" if self.config.getoption("strict") else "MUST requirements"
        tr.write_line(f"verdict: {self.verdict().upper()} ({scope})")

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        path = self.config.getoption("--report")
        if not path or hasattr(self.config, "workerinput"):
            return
        requirements = {}
        for req_id in IDS:
            entry = {"level": BY_ID[req_id].level.value, "verdict": "not-run", "detail": "",
                     "counterexample": ""}
            entry.update(self.outcomes.get(req_id, {}))
            requirements[req_id] = entry
        report = {"target": self.target.spec, "verdict": self.verdict(),
                  "requirements": requirements}
        Path(path).write_text(json.dumps(report, indent=2) + "\n")
