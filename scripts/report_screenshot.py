"""Screenshot a gdscope HTML report in headless Chromium and measure its layout.

Usage::

    .venv/bin/python scripts/report_screenshot.py REPORT.html [--full FULL.png] [--top TOP.png]
        [--width 1280] [--height 800]

Opens the report in Debian's Chromium (``scripts/install_browser.sh``; the same browser and
flags as the report test) at a ``width`` × ``height`` viewport, saves a full-page screenshot
(``--full``) and one of the first screen (``--top``), and prints one JSON object: the page
height in CSS px, the height of each table (the verdict table ``table.verdicts``, the summary
``table.glance``), the number of screens the page takes, the headings and text visible on
the first screen, and the study sections (``details.study``): how many start open, and the
page's height with every section folded and with every one open (measured after the
screenshots, which show the page as it loads). Reads the report only: nothing is written but
the screenshots.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]
CHROMIUM_ARGS += ["--disable-background-networking", "--disable-component-update"]
MEASURE = """() => {
  const height = (sel) => Array.from(document.querySelectorAll(sel))
    .map((e) => Math.round(e.getBoundingClientRect().height));
  const screen = window.innerHeight;
  const seen = Array.from(document.querySelectorAll('h1, h2, h3, th'))
    .filter((e) => { const r = e.getBoundingClientRect(); return r.top < screen && r.bottom > 0; })
    .map((e) => e.tagName.toLowerCase() + ': ' + e.innerText.trim().replace(/\\s+/g, ' '));
  const rows = (sel) => document.querySelectorAll(sel + ' tbody tr').length;
  return {
    page_height_px: document.documentElement.scrollHeight,
    viewport: [window.innerWidth, screen],
    verdict_table_heights_px: height('table.verdicts'),
    verdict_table_rows: rows('table.verdicts'),
    glance_table_heights_px: height('table.glance'),
    glance_table_rows: rows('table.glance'),
    figures: document.querySelectorAll('figure svg').length,
    first_screen_headings: seen,
    first_screen_text: document.body.innerText.slice(0, 1500),
    study_sections: document.querySelectorAll('details.study').length,
    study_sections_open: document.querySelectorAll('details.study[open]').length,
  };
}"""
HEIGHT_WITH = """(open) => {
  document.querySelectorAll('details.study').forEach((d) => { d.open = open; });
  return document.documentElement.scrollHeight;
}"""


def measure(report: Path, full: Path | None, top: Path | None, width: int, height: int) -> dict:
    """Open ``report`` in headless Chromium; save the screenshots asked for; return the sizes."""
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.is_file():
        raise SystemExit(f"{CHROMIUM} is missing: run scripts/install_browser.sh (as root)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(report.resolve().as_uri(), wait_until="load")
            sizes = page.evaluate(MEASURE)
            if top is not None:
                page.screenshot(path=str(top))
            if full is not None:
                page.screenshot(path=str(full), full_page=True)
            sizes["page_height_all_folded_px"] = page.evaluate(HEIGHT_WITH, False)
            sizes["page_height_all_open_px"] = page.evaluate(HEIGHT_WITH, True)
        finally:
            browser.close()
    sizes["screens"] = round(sizes["page_height_px"] / height, 1)
    return sizes


def main(argv: list[str]) -> int:
    """Parse the command line, measure, print the JSON object."""
    parser = argparse.ArgumentParser(
        description="Screenshot a gdscope HTML report in headless Chromium and measure its layout."
    )
    parser.add_argument("report", type=Path)
    parser.add_argument("--full", type=Path, help="full-page screenshot (PNG)")
    parser.add_argument("--top", type=Path, help="screenshot of the first screen (PNG)")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=800)
    args = parser.parse_args(argv)
    if not args.report.is_file():
        parser.error(f"report: no such file {str(args.report)!r}; give a report.html")
    if args.width < 320 or args.height < 200:
        got = f"{args.width}×{args.height}"
        parser.error(f"--width/--height: expected at least 320×200, got {got}")
    sizes = measure(args.report, args.full, args.top, args.width, args.height)
    print(json.dumps(sizes, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
