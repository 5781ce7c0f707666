"""Print the report to PDF with a headless Chromium (Debian's ``chromium``), when there is one.

Chromium lays the page out exactly as the HTML's print styles say (A4, page numbers in the
margin, table headers repeated), so the PDF is the HTML printed, not a second rendering to keep
in step. It runs with a throw-away profile (never the user's) and no network: the report has no
external asset.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = ["NoChromium", "find_chromium", "print_pdf"]

#: Where a Chromium may be, first match wins (Debian's package is the first).
CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class NoChromium(RuntimeError):
    """No Chromium to print with (the message says what to install)."""


def find_chromium() -> Path | None:
    for name in CANDIDATES:
        found = shutil.which(name) if not name.startswith("/") else (name if Path(name).exists() else None)
        if found:
            return Path(found)
    return None


def print_pdf(html_file: Path, pdf_file: Path, *, chromium: Path | None = None, timeout: float = 120.0) -> None:
    """Print ``html_file`` to ``pdf_file``; NoChromium without a browser, RuntimeError when printing fails."""
    browser = chromium or find_chromium()
    if browser is None:
        raise NoChromium(
            "no Chromium to print the PDF with (install Debian's package: apt-get install chromium); "
            "the HTML report prints from any browser too (Ctrl-P, A4)"
        )
    pdf_file = pdf_file.resolve()
    pdf_file.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="gateway-report-") as profile:
        args = [
            str(browser),
            "--headless",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--no-pdf-header-footer",  # the page's own footer (@page) carries the title and page numbers
            f"--print-to-pdf={pdf_file}",
            html_file.resolve().as_uri(),
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.insert(2, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
        try:
            done = subprocess.run(args, capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{browser} did not print the report within {timeout:.0f} s") from None
    if not pdf_file.exists() or pdf_file.read_bytes()[:5] != b"%PDF-":
        detail = done.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(f"{browser} did not print the report (exit {done.returncode}): {' / '.join(detail)}")
