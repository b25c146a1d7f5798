"""Screenshots of the cast page for docs/cast.md, taken from a running demo (nothing is changed).

    scripts/demo.sh &                                   # the demo on http://127.0.0.1:8000/
    .venv/bin/python scripts/cast_screenshots.py [--url http://127.0.0.1:8000] [--out docs]

Logs in as the demo user in Debian's headless Chromium (Playwright), 1400x1000, and writes
``cast-page.png`` (the grid), ``cast-clip.png`` (a face playing its highlight clip on hover) and
``cast-autocomplete.png`` (a group's name box offering an existing person) and ``cast-select.png``
(faces of several groups selected, the bar that names them once).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument("--user", default="demo")
    parser.add_argument("--password", default="demo-password")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--headless", "--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)
        page.goto(f"{args.url}/admin/login/?next=/admin/cast/")
        page.fill("#id_username", args.user)
        page.fill("#id_password", args.password)
        page.click("input[type=submit]")
        page.wait_for_selector("#cast[data-ready='1']")
        page.wait_for_function("() => Array.from(document.images).every(i => i.complete)")
        page.screenshot(path=str(args.out / "cast-page.png"))

        tile = page.locator("#cast-body .cast-group .cast-tile").first
        tile.hover()
        page.wait_for_function("() => { const v = document.querySelector('.cast-tile video');"
                               " return v && v.readyState >= 2 && v.currentTime > 0.3; }")
        page.screenshot(path=str(args.out / "cast-clip.png"))

        page.mouse.move(2, 2)
        box = page.locator("#cast-body .cast-group .cast-name input").first
        box.click()
        page.keyboard.type("Li")
        page.wait_for_selector(".cast-options:not([hidden]) li")
        page.screenshot(path=str(args.out / "cast-autocomplete.png"))

        page.keyboard.press("Escape")
        page.keyboard.press("Escape")
        for tile in page.locator("#cast-body .cast-groups .cast-tile").all()[1:4]:
            tile.click(modifiers=["Control"])
        page.wait_for_selector("#cast-selection:not([hidden])")
        page.screenshot(path=str(args.out / "cast-select.png"))
        browser.close()
    print(f"wrote cast-page.png, cast-clip.png, cast-autocomplete.png and cast-select.png into {args.out}")


if __name__ == "__main__":
    main()
