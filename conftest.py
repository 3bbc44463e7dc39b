"""Load the conformance plugin (`pytest --server-cmd ...`, `pytest --impl ...`)
and the Hypothesis profile: `ci` when CI is set, else `dev`
(`--hypothesis-profile NAME` overrides)."""

from spec import profiles

pytest_plugins = ["spec.pytest_plugin"]

profiles.load_default()
