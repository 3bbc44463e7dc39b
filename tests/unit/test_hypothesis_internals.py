"""spec/_hypothesis.py: the Hypothesis internals the checker relies on still exist.

If this fails after a Hypothesis upgrade, the message names the internal
that moved; spec/_hypothesis.py is the only module to change.
"""

from __future__ import annotations

import importlib

import pytest
from hypothesis import settings

from spec._hypothesis import INTERNALS, current_profile, identify


@pytest.mark.parametrize(("module", "name"), INTERNALS, ids=[f"{m}.{n}" for m, n in INTERNALS])
def test_the_internal_exists(module: str, name: str) -> None:
    found: object = importlib.import_module(module)
    for part in name.split("."):
        assert hasattr(found, part), f"Hypothesis moved {module}.{name}: update spec/_hypothesis.py"
        found = getattr(found, part)


def test_identify_sets_what_given_and_seed_set() -> None:
    def factory() -> None: ...

    identify(factory, b"key", 7)
    assert factory._hypothesis_internal_add_digest == b"key"  # type: ignore[attr-defined]
    assert factory._hypothesis_internal_use_seed == 7  # type: ignore[attr-defined]


def test_current_profile_names_the_loaded_profile() -> None:
    before = current_profile()
    settings.register_profile("echo-internals-test", settings())
    settings.load_profile("echo-internals-test")
    try:
        assert current_profile() == "echo-internals-test"
    finally:
        settings.load_profile(before)
