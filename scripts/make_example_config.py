#!/usr/bin/env python3
"""Write data/nkod.example.toml from the config schema (nkod.config_example). Run after adding a key."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from nkod.config_example import render_example  # noqa: E402

if __name__ == "__main__":
    target = REPO / "data" / "nkod.example.toml"
    target.write_text(render_example())
    print(f"wrote {target}")
