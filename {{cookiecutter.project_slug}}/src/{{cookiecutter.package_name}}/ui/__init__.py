"""The pilot web app: plain HTML, CSS and JavaScript modules in `static/`, no build step.

`api/routes/ui.py` serves them at /ui; they call the same API as everyone else, with the key a
user enters (see docs/ui.md)."""

from __future__ import annotations

from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"
