"""Test-wide settings. Under CI=true hypothesis is derandomized: CI must judge the change, not the luck of
new examples (local runs keep exploring at random and save what they find in .hypothesis/)."""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") == "true" else "dev")
