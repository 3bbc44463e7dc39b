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
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import hypothesis
import psutil
import pytest

from impl.zoo import DEFECTS

ROOT = Path(__file__).resolve().parent.parent
DISTRIBUTION = "echo-conformance"
#: What a copy of the checkout leaves out: VCS data, environments, caches, build output.
NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv*",
    "venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".hypothesis",
    ".pytest_cache",
    ".ruff_cache",
    "regressions",
    "report.json",
)
#: The defect the installed plugin checks: rejected under ECHO-1 within a second.
DEFECT = DEFECTS["decode-replace"]
#: Selects its requirement's test alone (``-k ECHO-1`` would match ECHO-10 too).
ONLY_ITS_REQUIREMENT = "ECHO-1 and not ECHO-10"
#: Bound on each step (build, install, run); the whole test takes about 15 s.
STEP_TIMEOUT = 120

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


# -- the installed copy -------------------------------------------------------------------


def _run(argv: list[str], *, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=STEP_TIMEOUT, check=False
    )


def _clean_env() -> dict[str, str]:
    """This environment without what would point Python or pytest at the checkout."""
    return {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP") and not k.startswith("PYTEST_")
    }


def _can_build_offline() -> bool:
    """Whether this interpreter's setuptools builds the wheel as pyproject.toml asks."""
    try:
        major, minor = (int(x) for x in importlib.metadata.version("setuptools").split(".")[:2])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return False
    if (major, minor) < (68, 0):  # pyproject.toml's build-system requirement
        return False
    if (major, minor) >= (70, 1):  # bdist_wheel is part of setuptools from 70.1
        return True
    try:
        importlib.metadata.version("wheel")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _build_wheel(tmp: Path, env: dict[str, str]) -> Path:
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE, symlinks=True)
    isolation = ["--no-build-isolation"] if _can_build_offline() else []
    built = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            *isolation,
            "-q",
            str(source),
            "-w",
            str(tmp / "dist"),
        ],
        cwd=tmp,
        env=env,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp / "dist").glob("*.whl")
    return wheel


def _own_entries(source: Path) -> set[str]:
    """The names this project's distribution, if installed in `source`, put there."""
    own = {"__pycache__"}  # compiled caches, this project's among them
    for dist in importlib.metadata.distributions(path=[str(source)]):
        if dist.metadata["Name"].lower().replace("_", "-") == DISTRIBUTION:
            own.update(f.parts[0] for f in dist.files or [])
    return own


def _link_dependencies(site: Path) -> None:
    """Link every entry of the site-packages holding this interpreter's dependencies
    into `site`, except this project's own (an editable install's hooks included)."""
    sources = {Path(m.__file__).resolve().parent.parent for m in (pytest, hypothesis, psutil)}
    for source in sorted(sources):
        own = _own_entries(source)
        for entry in source.iterdir():
            target = site / entry.name
            if entry.name not in own and not target.exists():
                target.symlink_to(entry)


def _install(wheel: Path, tmp: Path, env: dict[str, str]) -> Path:
    """A new virtual environment holding the wheel; its interpreter."""
    venv = tmp / "venv"
    made = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp, env=env)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    installed = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        cwd=tmp,
        env=env,
    )
    assert installed.returncode == 0, installed.stderr
    site = _run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        cwd=tmp,
        env=env,
    )
    _link_dependencies(Path(site.stdout.strip()))
    return python


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX virtual-environment layout")
def test_installed_copy_checks_a_zoo_defect(tmp_path: Path) -> None:
    env = _clean_env()
    wheel = _build_wheel(tmp_path, env)

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

    python = _install(wheel, tmp_path, env)
    venv = str(python.parent.parent)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "run_plugin.py").write_text(RUN_PLUGIN)

    # The plugin, from its entry point, rejects the defect under its ID.
    run = _run(
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
    output = run.stdout + run.stderr
    report_line = [line for line in run.stdout.splitlines() if line.startswith("REPORT ")]
    assert report_line, output
    report = json.loads(report_line[-1].removeprefix("REPORT "))
    assert report["from_checkout"] == [], output
    for module in ("impl", "spec", "plugin"):
        assert report[module].startswith(venv), (module, report[module])
    assert report["exit_code"] == 1, output  # pytest: tests failed
    assert f"{DEFECT.requirement}: " in output, output  # the diagnosis names the ID
    # Its row of the conformance table: "ECHO-1   MUST   Transform   FAIL   1.61 s".
    assert re.search(rf"^{DEFECT.requirement} +MUST +.* FAIL\b", run.stdout, re.MULTILINE), output
    assert "verdict: FAIL" in output, output

    # The zoo lists from the installed copy.
    listed = _run(
        [str(python), "-c", "import impl.zoo as z; print(len(z.DEFECTS), z.__file__)"],
        cwd=elsewhere,
        env=env,
    )
    count, where = listed.stdout.split()
    assert (int(count), where.startswith(venv)) == (len(DEFECTS), True), listed.stderr

    # The README's commands start there too.
    for module in ("impl.select_server", "impl.client", "spec.replay"):
        helped = _run([str(python), "-m", module, "--help"], cwd=elsewhere, env=env)
        assert helped.returncode == 0, (module, helped.stderr)
