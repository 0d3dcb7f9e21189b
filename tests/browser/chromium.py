"""Debian's Chromium driven by Playwright for Python; no browser is ever downloaded.

Install with ``apt-get install chromium`` and ``pip install playwright`` (never
``playwright install``). Without them the browser tests are skipped, unless
``AUTHBRIDGE_REQUIRE_BROWSER=1`` (as ``scripts/test`` sets): then they fail.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
# Flags that work as root in containers; Playwright adds its automation flags itself.
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
REQUIRE_BROWSER = os.environ.get("AUTHBRIDGE_REQUIRE_BROWSER") == "1"


def browser_missing() -> str | None:
    """Why the browser tests cannot run on this machine, or ``None``."""
    if not CHROMIUM.is_file():
        return f"{CHROMIUM} not found (apt-get install chromium)"
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed (pip install playwright)"
    return None
