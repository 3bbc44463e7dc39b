"""A fresh environment with pytest-html beside the plugin: other projects' pytest is unchanged.

Design note
-----------
A new virtual environment (with pip, from the index pip is configured with;
offline from a local one) gets pytest-html and Hypothesis, and a plain
Hypothesis project is tested there; then this checkout's wheel (built as in
tests/project/test_packaging.py) is installed with its dependencies, and:

* the project's ``pytest`` passes, and its derandomized Hypothesis test draws
  exactly what it drew before the plugin was installed, also when our checks
  ran first in the same session (what the checker changes in Hypothesis is
  scoped to its checks and put back);
* ``pytest --html=x.html`` is pytest-html's report;
* ``pytest --echo-impl ...`` rejects a zoo defect, and ``--echo-html`` writes
  our report in the same run as pytest-html's.

The plugin is installed from a wheel, not editable: Hypothesis mixes the
literals of modules outside site-packages into what it draws, so an
editable checkout's modules, once imported, count as the project's own.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from install import DEFECT, ONLY_ITS_REQUIREMENT, build_wheel, clean_env, run

#: A plain project's test: derandomized draws, written to $DRAWS, one a line.  The
#: module's literals are what Hypothesis would mix in (they must stay the project's own).
PLAIN_TEST = """
import os
from hypothesis import given, settings, strategies as st

WORDS = ("quokka-zebra-7731", "platypus-0x5eed")
NUMBER = 918273645


@settings(derandomize=True, max_examples=200, database=None)
@given(st.text(), st.integers(), st.binary())
def test_draws(text, number, data):
    with open(os.environ["DRAWS"], "a") as f:
        f.write(repr((text, number, data)) + "\\n")
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX virtual-environment layout")
def test_pytest_html_and_a_plain_project_beside_the_plugin(tmp_path: Path) -> None:
    env = clean_env()
    wheel = build_wheel(tmp_path, env)
    venv = tmp_path / "venv"
    made = run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path, env=env)
    assert made.returncode == 0, made.stderr
    python = str(venv / "bin" / "python")

    def pip_install(*what: str) -> None:
        done = run([python, "-m", "pip", "install", "-q", *what], cwd=tmp_path, env=env)
        assert done.returncode == 0, done.stderr

    project = tmp_path / "project"
    project.mkdir()
    (project / "test_plain.py").write_text(PLAIN_TEST)

    def pytest_in_project(draws: str, *args: str) -> str:
        done = run(
            [python, "-m", "pytest", "-p", "no:cacheprovider", *args],
            cwd=project,
            env={**env, "DRAWS": str(tmp_path / draws)},
        )
        return f"exit {done.returncode}\n{done.stdout}{done.stderr}"

    pip_install("pytest-html", "hypothesis", "pytest")
    before = pytest_in_project("before")
    assert before.startswith("exit 0"), before

    pip_install(str(wheel))
    after = pytest_in_project("after", "--html=pytest-html.html")
    assert after.startswith("exit 0"), after  # no conflicting option, the project passes
    assert (tmp_path / "after").read_text() == (tmp_path / "before").read_text()
    page = (project / "pytest-html.html").read_text()
    assert "pytest-html" in page and "test_draws" in page  # pytest-html's own report

    # Our checks and the project's test in one session, ours first.
    site = run([python, "-c", "import spec; print(spec.__path__[0])"], cwd=project, env=env)
    conformance = str(Path(site.stdout.strip()) / "test_conformance.py")
    both = pytest_in_project(
        "both", conformance, "test_plain.py", "--echo-impl", DEFECT.target, "-k",
        f"{ONLY_ITS_REQUIREMENT} or test_draws", "--echo-html=ours.html", "--html=theirs.html",
    )  # fmt: skip
    assert both.startswith("exit 1"), both  # the defect fails its requirement
    assert f"{DEFECT.requirement}: " in both and "verdict: FAIL" in both, both
    assert (tmp_path / "both").read_text() == (tmp_path / "before").read_text()
    assert "sequence diagram" in (project / "ours.html").read_text().lower()
    assert "pytest-html" in (project / "theirs.html").read_text()
