"""Regenerate docs/report.png: a study's HTML report as headless Chromium renders it.

    .venv/bin/python docs/screenshot.py hasten-runs/demo-minilm
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

from hasten import Study
from hasten.report import write_report

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def main(folder: str, out: str = str(Path(__file__).with_name("report.png"))) -> None:
    """Write the study's report, open it in Chromium and save a full-page screenshot."""
    report = write_report(Study(folder))
    with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        browser = p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, args=FLAGS, headless=True,
            viewport={"width": 1440, "height": 900})
        page = browser.new_page()
        page.goto(report.resolve().as_uri())
        page.screenshot(path=out, full_page=True)
        browser.close()
    Image.open(out).quantize(colors=128).save(out, optimize=True)  # a third of the size
    print(f"Wrote {out} from {report}")


if __name__ == "__main__":
    main(*sys.argv[1:])
