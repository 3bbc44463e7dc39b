"""The self-suite's set-up: the conformance plugin and the Hypothesis profile.

The plugin (`pytest --echo-server-cmd ...`, `pytest --echo-impl ...`) is normally loaded
through its ``pytest11`` entry point; from a checkout that is not installed it
is loaded from here instead (loading it twice would be an error).  The
profile is `ci` when CI is set, else `dev` (`--hypothesis-profile NAME`
overrides).
"""

from importlib.metadata import entry_points

from spec import profiles

if not any(ep.value == "spec.plugin" for ep in entry_points(group="pytest11")):
    # Only when needed: pytest refuses `pytest_plugins` (even empty) in a
    # conftest that is not at the rootdir, as when the plugin, run from
    # another directory, collects spec/test_conformance.py from here.
    pytest_plugins = ["spec.plugin"]


def pytest_configure(config) -> None:  # type: ignore[no-untyped-def]
    """The self-suite's default profile, unless --hypothesis-profile names one."""
    if config.getoption("hypothesis_profile", None) is None:
        profiles.load_default()
