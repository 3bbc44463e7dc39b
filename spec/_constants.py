"""Programs drawn from the checker's strategies alone, not from the literals of loaded code.

Hypothesis draws about 1 value in 20 from the literals of the *local* modules
imported so far (``hypothesis.internal.constants_ast``: code outside
site-packages and the standard library), and it rescans whenever
``sys.modules`` grows.  For a conformance checker that is wrong three ways:
a derandomized program would depend on what the process imported before the
check (which tests an xdist worker ran first), on whether the checker runs
from a checkout or from site-packages, and the checker's own literals
(bytes it uses internally) would turn up inside generated payloads.

`no_local_constants()` empties that pool for the checker's draws, so the
same seed gives the same program everywhere.  It uses a Hypothesis internal;
if that moves, the checker still works and only this guarantee is lost,
which `tests/test_generation_constants.py` would show.
"""

from __future__ import annotations

import contextlib


def no_local_constants() -> None:
    """Make Hypothesis mix no local-module literals into generated values (idempotent)."""
    with contextlib.suppress(ImportError, AttributeError):
        from hypothesis.internal.conjecture import providers

        if getattr(providers, "_echo_conformance_patched", False):
            return
        empty = providers.Constants()  # type: ignore[attr-defined]
        providers._get_local_constants = lambda: empty
        providers._echo_conformance_patched = True  # type: ignore[attr-defined]
