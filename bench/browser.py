"""Real Chromium for the dashboard's tests and benchmark: the OS package driven by Playwright (its
own browser downloads are never used), started as on a machine with no internet, and signed in
through the page's own form."""
from __future__ import annotations

import os
import shutil

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class NoBrowser(RuntimeError):
    pass


def chromium_executable() -> str:
    """The OS Chromium ($MARGINTICK_CHROMIUM, else chromium / chromium-browser on PATH)."""
    for candidate in (os.environ.get("MARGINTICK_CHROMIUM"), "chromium", "chromium-browser"):
        path = candidate and shutil.which(candidate)
        if path:
            return path
    raise NoBrowser("no Chromium found: install the OS package (apt-get install chromium; ./run.sh test does it "
                    "as root) or set MARGINTICK_CHROMIUM")


def launch(playwright):
    return playwright.chromium.launch(executable_path=chromium_executable(), args=CHROMIUM_ARGS)


def sign_in(page, base: str, user: str, password: str) -> None:
    """Signs in through the login form and waits for the blotter's first row."""
    page.goto(f"{base}/login")
    page.fill("#username", user)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_selector("#blotter .tabulator-row", timeout=30_000)
