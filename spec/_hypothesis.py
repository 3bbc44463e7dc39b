"""Every Hypothesis internal the checker relies on, in one place.

Hypothesis' public API has no way to say three things the checker needs: a
database key and a seed for a state machine's factory (what ``@given`` sets
on a test function), the name of the profile loaded, and a draw free of the
literals of loaded code.  Each is reached here and nowhere else, and
`tests/unit/test_hypothesis_internals.py` fails loudly, naming the internal, when
a Hypothesis release moves one.

Programs drawn from the checker's strategies alone, not from the literals of loaded code
-----------------------------------------------------------------------------------------

Hypothesis draws about 1 value in 20 from the literals of the *local* modules
imported so far (``hypothesis.internal.constants_ast``: code outside
site-packages and the standard library), and it rescans whenever
``sys.modules`` grows.  For a conformance checker that is wrong three ways:
a derandomized program would depend on what the process imported before the
check (which tests an xdist worker ran first), on whether the checker runs
from a checkout or from site-packages, and the checker's own literals
(bytes it uses internally) would turn up inside generated payloads.

``with no_local_constants():`` empties that pool for the draws made inside
it, and puts Hypothesis back as it was on leaving, so any other Hypothesis
test in the same process (a user's own suite, beside the plugin) generates
exactly as it would without this package.  Calling ``no_local_constants()``
without entering it does nothing.  It uses a Hypothesis internal; if that
moves, the checker still works and only this guarantee is lost, which
`tests/checker/test_generation_constants.py` would show.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

from hypothesis import settings

#: The internals used, as (module, attribute): the test checks each exists.
INTERNALS = (
    ("hypothesis.internal.conjecture.providers", "_get_local_constants"),
    ("hypothesis.internal.conjecture.providers", "Constants"),
    ("hypothesis", "settings._current_profile"),
)


def identify(factory: Any, digest: bytes, seed: int | None) -> None:
    """Give a state machine factory its example-database key and, if not
    None, its seed: what ``@given`` and ``@seed`` set on a test function."""
    factory._hypothesis_internal_add_digest = digest
    if seed is not None:
        factory._hypothesis_internal_use_seed = seed


def current_profile(default: str = "default") -> str:
    """The name of the settings profile loaded last."""
    return str(getattr(settings, "_current_profile", default))


_lock = threading.Lock()
#: How many scopes are open, and what Hypothesis had before the first one.
_depth = 0
_original: Callable[[], Any] | None = None


@contextlib.contextmanager
def no_local_constants() -> Iterator[None]:
    """Inside: Hypothesis mixes no local-module literals into generated values (nestable)."""
    global _depth, _original
    try:
        from hypothesis.internal.conjecture import providers

        empty = providers.Constants()  # type: ignore[attr-defined]
        providers._get_local_constants  # noqa: B018  (fails here if it moved)
    except (ImportError, AttributeError):
        yield
        return
    with _lock:
        if _depth == 0:
            _original = providers._get_local_constants
            providers._get_local_constants = lambda: empty
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                providers._get_local_constants = _original  # type: ignore[assignment]
                _original = None
