"""Fix the constants Hypothesis mixes into generated programs, once per process.

Hypothesis draws about 1 value in 20 from the literals of the *local* modules
imported so far (``hypothesis.internal.constants_ast``: code outside
site-packages and the standard library), and it rescans whenever
``sys.modules`` grows.  So a derandomized program depends on what the process
happened to import before it: which tests an xdist worker ran first, whether
an earlier check failed and imported the replay helpers.  The same target and
seed then gave different verdicts in the self-suite than alone (a zoo defect
missed after `tests/test_verdicts.py` had imported the other servers).

`import_local_modules()` imports every module of this distribution (`spec`,
`impl`) before the first program is drawn, so the pool is the same for every
check of a run, whatever ran before it.  A user's own `--impl` module is
imported when the target is named, before any check.
"""

from __future__ import annotations

import importlib
import pkgutil

#: The distribution's packages; test modules are left out (Hypothesis ignores them).
PACKAGES = ("spec", "impl")
_done = False


def import_local_modules() -> None:
    global _done
    if _done:
        return
    for name in PACKAGES:
        package = importlib.import_module(name)
        for module in pkgutil.walk_packages(package.__path__, f"{name}."):
            if not module.name.rpartition(".")[2].startswith("test_"):
                importlib.import_module(module.name)
    _done = True
