"""The distribution: a non-editable install gives everything the README uses.

Design note
-----------
`test_installed_copy_checks_a_zoo_defect` builds the wheel from a copy of
the checkout, installs it into a new virtual environment in a temporary
directory, and from another temporary directory runs the conformance plugin
against a zoo defect and lists the zoo.  To stay fast and offline:

* The wheel is built with ``--no-build-isolation`` when this interpreter
  has a setuptools that can build it; otherwise pip builds it in an isolated
  environment with the setuptools ``pyproject.toml`` asks for, from the
  configured index (as ``pip install -e .`` did).
* The new environment is created without pip, and the wheel installed into
  it with this interpreter's pip (``pip --python``), ``--no-deps --no-index``.
* Its dependencies (pytest, Hypothesis, psutil, ...) are this interpreter's:
  every entry of the site-packages directories that hold them is linked into
  the new environment's site-packages, except this project's own entries
  (its modules, its metadata, an editable install's hooks), so nothing but
  the installed copy can provide `impl` or `spec`.

The programs run there report which files their modules came from; the test
fails if any came from the checkout.  `test_impl_does_not_import_spec` keeps
the layering that lets tools measuring the suite live in bench/: the servers
(impl) never import the checker (spec).
"""

from __future__ import annotations

import ast
import json
import re
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
from install import DEFECT, ONLY_ITS_REQUIREMENT, build_wheel, clean_env, install, run
from runs import ROOT

from impl.zoo import DEFECTS

#: Run by the installed interpreter from a directory outside the checkout: the
#: conformance plugin (found through its entry point) against the defect, then
#: a report of where `impl` and `spec` came from and of every module loaded
#: from the checkout (outside the new environment, should that lie inside it).
RUN_PLUGIN = textwrap.dedent("""\
    import json, sys
    import pytest
    exit_code = pytest.main(sys.argv[2:])
    import impl, spec, spec.pytest_plugin
    root, prefix = sys.argv[1], sys.prefix + "/"
    from_checkout = sorted(
        name for name, module in list(sys.modules.items())
        if (path := getattr(module, "__file__", None) or "").startswith(root)
        and not path.startswith(prefix))
    print("REPORT " + json.dumps({
        "exit_code": int(exit_code), "impl": impl.__file__, "spec": spec.__file__,
        "plugin": spec.pytest_plugin.__file__, "from_checkout": from_checkout}))
    """)


# -- the layering -------------------------------------------------------------------------


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_impl_does_not_import_spec() -> None:
    """The servers stand alone: no module under impl/ imports the checker."""
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            m for m in _imported_modules(path) if m == "spec" or m.startswith("spec.")
        )
        for path in sorted((ROOT / "impl").rglob("*.py"))
    }
    assert {p: m for p, m in offenders.items() if m} == {}


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX virtual-environment layout")
def test_installed_copy_checks_a_zoo_defect(tmp_path: Path) -> None:
    env = clean_env()
    wheel = build_wheel(tmp_path, env)

    # Every package of the checkout is in the wheel, the zoo included.
    with zipfile.ZipFile(wheel) as z:
        shipped = set(z.namelist())
    packages = {
        str(p.relative_to(ROOT))
        for top in ("impl", "spec")
        for p in (ROOT / top).rglob("__init__.py")
    }
    assert packages <= shipped, f"not in the wheel: {sorted(packages - shipped)}"
    assert "spec/PROTOCOL.md" in shipped

    python = install(wheel, tmp_path, env)
    venv = str(python.parent.parent)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "run_plugin.py").write_text(RUN_PLUGIN)

    # The plugin, from its entry point, rejects the defect under its ID.
    checked = run(
        [
            str(python),
            "run_plugin.py",
            str(ROOT),
            "-p",
            "no:cacheprovider",
            "--echo-impl",
            DEFECT.target,
            "-k",
            ONLY_ITS_REQUIREMENT,
        ],
        cwd=elsewhere,
        env=env,
    )
    output = checked.stdout + checked.stderr
    report_line = [line for line in checked.stdout.splitlines() if line.startswith("REPORT ")]
    assert report_line, output
    report = json.loads(report_line[-1].removeprefix("REPORT "))
    assert report["from_checkout"] == [], output
    for module in ("impl", "spec", "plugin"):
        assert report[module].startswith(venv), (module, report[module])
    assert report["exit_code"] == 1, output  # pytest: tests failed
    assert f"{DEFECT.requirement}: " in output, output  # the diagnosis names the ID
    # Its row of the conformance table: "ECHO-1   MUST   Transform   FAIL   1.61 s".
    row = rf"^{DEFECT.requirement} +MUST +.* FAIL\b"
    assert re.search(row, checked.stdout, re.MULTILINE), output
    assert "verdict: FAIL" in output, output

    # The zoo lists from the installed copy.
    listed = run(
        [str(python), "-c", "import impl.zoo as z; print(len(z.DEFECTS), z.__file__)"],
        cwd=elsewhere,
        env=env,
    )
    count, where = listed.stdout.split()
    assert (int(count), where.startswith(venv)) == (len(DEFECTS), True), listed.stderr

    # The README's commands start there too.
    for module in ("impl.select_server", "impl.client", "spec.replay"):
        helped = run([str(python), "-m", module, "--help"], cwd=elsewhere, env=env)
        assert helped.returncode == 0, (module, helped.stderr)
