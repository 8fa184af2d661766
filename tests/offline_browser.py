"""Headless Chromium with the network off, shared by the report's browser tests."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-webgl",  # the report must not need WebGL (machines without a GPU, remote desktops)
    "--disable-3d-apis",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def playwright_or_skip() -> Any:
    """``playwright.sync_api``; skips without Chromium, fails in CI (which installs it)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[dev]'")
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI: .ci/run installs Debian's chromium")
        pytest.skip("chromium not installed (apt-get install chromium; CI installs it)")
    return sync_api


def open_offline(
    browser: Any, path: Path, errors: list[str], external: list[str], **page_options: Any
) -> Any:
    """A page showing the report at ``path`` once its charts are drawn; console errors, page
    errors and dialogs go to ``errors``, and any request not from the file itself is refused
    and recorded in ``external``."""
    page = browser.new_page(**page_options)
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("dialog", lambda d: (errors.append(f"dialog: {d.message}"), d.dismiss()))

    def block(route: Any) -> None:  # offline: anything not from the file fails
        url = route.request.url
        if url.startswith(("file:", "data:", "blob:")):
            route.continue_()
        else:
            external.append(url)
            route.abort()

    page.route("**/*", block)
    page.goto(path.as_uri())
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length")
    return page
