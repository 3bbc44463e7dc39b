"""Running pytest and the repository's programs in a subprocess, as a user does.

`pytest_run` is ``python -m pytest -p no:cacheprovider ARGS`` from the
repository root (or `cwd`), output captured, bounded by `timeout`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

#: The repository's root: tests/ is one level below it.
ROOT = Path(__file__).resolve().parent.parent
#: This interpreter, the one the self-suite runs under.
PY = sys.executable


def pytest_run(
    *args: str, timeout: float = 300, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
