"""Installing this project as a user does: the wheel built from a copy of the
checkout, installed into a new virtual environment whose dependencies are this
interpreter's (see tests/project/test_packaging.py for the design).
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

import hypothesis
import psutil
import pytest
from runs import ROOT

from impl.zoo import DEFECTS

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


def run(argv: list[str], *, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=STEP_TIMEOUT, check=False
    )


def clean_env() -> dict[str, str]:
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


def build_wheel(tmp: Path, env: dict[str, str]) -> Path:
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE, symlinks=True)
    isolation = ["--no-build-isolation"] if _can_build_offline() else []
    built = run(
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
    sources = {Path(str(m.__file__)).resolve().parent.parent for m in (pytest, hypothesis, psutil)}
    for source in sorted(sources):
        own = _own_entries(source)
        for entry in source.iterdir():
            target = site / entry.name
            if entry.name not in own and not target.exists():
                target.symlink_to(entry)


def install(wheel: Path, tmp: Path, env: dict[str, str]) -> Path:
    """A new virtual environment holding the wheel; its interpreter."""
    venv = tmp / "venv"
    made = run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp, env=env)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    installed = run(
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
    site = run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        cwd=tmp,
        env=env,
    )
    _link_dependencies(Path(site.stdout.strip()))
    return python
