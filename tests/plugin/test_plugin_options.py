"""The plugin in other people's pytest runs: inert until asked, prefixed options, ini keys.

The pytest11 entry point (`spec.plugin`) is loaded by every pytest run of an
environment it is installed in.  These tests run pytest in a subprocess, as
a user would, in a directory of its own when the run must not see this
checkout's conftest.py.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

from runs import PY, ROOT, pytest_run

from spec import checker, plugin
from spec.requirements import IDS

SEED_UPPER = "impl.seed_upper_server:SeedUpperServer"
REFERENCE = "impl.select_server:SelectEchoServer"

#: A project's own test: after everything ran, which of our modules were loaded,
#: and whether Hypothesis' local-constants function is still its own.
PLAIN_PROJECT_TEST = """
import sys
from hypothesis.internal.conjecture import providers

def test_nothing_of_echo_conformance_is_loaded():
    ours = sorted(m for m in sys.modules if m.split(".")[0] in ("spec", "impl"))
    assert ours == ["spec", "spec.plugin"], ours
    assert providers._get_local_constants.__module__ == providers.__name__
"""


def _env_with_checkout() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def test_the_defaults_mirror_the_checkers() -> None:
    assert (plugin.DEFAULT_SETTLE, plugin.DEFAULT_BUDGET) == (
        checker.DEFAULT_SETTLE,
        checker.DEFAULT_BUDGET,
    )


def test_loading_the_entry_point_imports_nothing_else_of_ours() -> None:
    code = (
        "import sys; import spec.plugin; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('spec', 'impl', "
        "'hypothesis')))"
    )
    done = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "['spec', 'spec.plugin']", done.stderr


def test_a_run_without_our_options_loads_and_patches_nothing(tmp_path: Path) -> None:
    (tmp_path / "test_own.py").write_text(PLAIN_PROJECT_TEST)
    done = pytest_run(cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


def test_the_options_all_start_with_echo() -> None:
    done = pytest_run("--help", timeout=60)
    ours = done.stdout.split("echo server conformance", 1)[1].split("\n\n", 1)[0]
    options = [w.split("=")[0] for w in ours.split() if w.startswith("--")]
    assert options and all(o.startswith("--echo-") for o in options), options
    assert {"--echo-strict", "--echo-html", "--echo-report", "--echo-list"} <= set(options)


def test_list_prints_every_requirement_and_runs_nothing(tmp_path: Path) -> None:
    done = pytest_run("--echo-list", cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for req_id in IDS:
        assert any(line.split()[:1] == [req_id] for line in lines), req_id
    assert "ECHO-4   MUST   Half-close        programs of connect" in done.stdout
    assert "ECHO-9   SHOULD Idle              a measurement" in done.stdout
    assert "test session starts" not in done.stdout


def test_ini_keys_stand_for_the_options(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text(
        textwrap.dedent(f"""\
        [pytest]
        echo_impl = {SEED_UPPER}
        echo_budget = 5
        echo_strict = true
        echo_report = report.json
        """)
    )
    (tmp_path / "sub").mkdir()
    done = pytest_run("-k", "ECHO-8", cwd=tmp_path / "sub", env=_env_with_checkout(), timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "ECHO-8   SHOULD Bounded memory    FAIL" in done.stdout  # strict, from the ini
    assert (tmp_path / "report.json").is_file()  # beside the ini file, as pytest's paths
    # The command line wins over the ini file.
    done = pytest_run(
        "--echo-impl", REFERENCE, "-k", "ECHO-1 and not ECHO-10", cwd=tmp_path,
        env=_env_with_checkout(), timeout=120,
    )  # fmt: skip
    assert "select_server" in done.stdout and "seed_upper_server" not in done.stdout


def test_a_bad_ini_value_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text(f"[pytest]\necho_impl = {REFERENCE}\necho_settle = 0\n")
    done = pytest_run(cwd=tmp_path, env=_env_with_checkout(), timeout=60)
    assert done.returncode == 4, done.stdout + done.stderr
    assert "ini option echo_settle: must be a positive number of seconds" in done.stderr


def test_junitxml_has_one_testcase_per_target_and_requirement(tmp_path: Path) -> None:
    xml = tmp_path / "junit.xml"
    done = pytest_run(
        "--echo-impl", SEED_UPPER, "--echo-impl", REFERENCE, "-k", "ECHO-5", "-n", "2",
        f"--junitxml={xml}",
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    cases = {case.get("name"): case for case in ET.parse(xml).getroot().iter("testcase")}
    assert set(cases) == {
        "test_requirement[seed_upper_server-ECHO-5]",
        "test_requirement[select_server-ECHO-5]",
    }
    failed = cases["test_requirement[seed_upper_server-ECHO-5]"]
    properties = {p.get("name"): p.get("value") for p in failed.iter("property")}
    assert properties == {
        "target": "seed_upper_server",
        "requirement": "ECHO-5",
        "level": "MUST",
        "verdict": "fail",
    }
    failure = failed.find("failure")
    assert failure is not None
    assert "ECHO-5 (MUST, Resilience) fails" in (failure.text or "")
    assert "python -m spec.replay" in (failure.text or "")
    passed = cases["test_requirement[select_server-ECHO-5]"]
    assert {p.get("name"): p.get("value") for p in passed.iter("property")}["verdict"] == "pass"


UNCONFIGURE = f"""
import sys, pytest
from hypothesis import settings
from hypothesis.internal.conjecture import providers
before = (settings._current_profile, providers._get_local_constants)
code = pytest.main(["-p", "no:cacheprovider", "-q", "--echo-impl", "{REFERENCE}",
                    "-k", "ECHO-1 and not ECHO-10"])
after = (settings._current_profile, providers._get_local_constants)
print("RESULT", int(code), before == after)
"""


def test_a_run_leaves_the_process_as_it_found_it(tmp_path: Path) -> None:
    """pytest.main() in a process that goes on: the profile and the patch are undone."""
    done = subprocess.run(
        [PY, "-c", UNCONFIGURE],
        cwd=tmp_path,
        env=_env_with_checkout(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout.splitlines()[-1] == "RESULT 1 True", done.stdout + done.stderr
