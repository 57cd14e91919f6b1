"""What a person notices when they open a page: headless Chromium loads a local
HTML file and reports images that did not load, a page wider than the window,
and a full-page screenshot.

    from browser import check_page, chromium_or_skip    # tests/ is on sys.path under pytest
    seen = check_page(out / "report.html", screenshot=tmp_path / "shot.png")
    assert seen["images_failed"] == 0 and not seen["overflow"], seen

No dependency beyond a Chromium binary ($CHROMIUM, else chromium,
chromium-browser, google-chrome on PATH). The page is copied to a temporary
folder with a <base> pointing back at its own folder (so relative images
resolve as they would) and a small script that, on `load`, writes what it
measured into an attribute of <html>; `--dump-dom` prints the DOM, and the
attribute is read back. A second run takes the screenshot at the page's full
height. Every Chromium run has a timeout, and its whole process group is
killed after it.
"""
from __future__ import annotations

import html
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

# Headless as root without a sandbox; the networking/update flags stop it
# from calling Google's services, which stalls on a machine without internet.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--force-device-scale-factor=1", "--virtual-time-budget=5000"]
MAX_SHOT_HEIGHT = 16000            # px; a taller page is cut there rather than asking for a huge bitmap
ATTR = "data-page-check"

# Runs on `load` (after every image has loaded or failed). documentElement.clientWidth
# excludes the vertical scrollbar, so scrollWidth > clientWidth is a horizontal scrollbar.
PROBE = """<script>addEventListener("load", () => {
  const d = document.documentElement, w = d.clientWidth;
  const failed = [...document.images].filter(i => !i.complete || i.naturalWidth === 0);
  const name = e => e.tagName.toLowerCase() + (e.id ? "#" + e.id : "")
      + (e.getAttribute("class") ? "." + e.getAttribute("class") : "");
  // what sticks out: outermost elements past the right edge whose parent does not clip them
  const wide = [...document.body.querySelectorAll("*")].filter(e => e.getBoundingClientRect().right > w + 0.5
      && getComputedStyle(e.parentElement).overflowX === "visible"
      && e.parentElement.getBoundingClientRect().right <= w + 0.5).slice(0, 5)
      .map(e => name(e) + " " + Math.round(e.getBoundingClientRect().width) + "px");
  // tables wider than the page: they scroll inside their wrapper, and a reader has to scroll to read them
  const scrolled = [...document.querySelectorAll(".table-wrap")].filter(e => e.scrollWidth > e.clientWidth + 1)
      .map(e => (e.querySelector("caption") || e).textContent.trim().slice(0, 80));
  d.setAttribute("%s", JSON.stringify({images: document.images.length, images_failed: failed.length,
      scrolled_tables: scrolled,
      failed_sources: failed.slice(0, 5).map(i => i.getAttribute("src").slice(0, 120)),
      scroll_width: d.scrollWidth, client_width: w, viewport_width: innerWidth,
      page_height: d.scrollHeight, wide_elements: d.scrollWidth > w ? wide : [], title: document.title}));
});</script>""" % ATTR


def find_chromium() -> str | None:
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if name and (path := shutil.which(name)):
            return path
    return None


def chromium_or_skip() -> str:
    """The browser, or a skip; on CI (CI set) a missing browser fails instead,
    since CI installs one and a silent skip would hide the check."""
    import pytest
    path = find_chromium()
    if path is None:
        message = "Chromium not found: install it (Debian: apt-get install chromium) or set $CHROMIUM"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    return path


def _run(args: list, timeout: float) -> subprocess.CompletedProcess:
    # A session of its own, so the browser's helper processes go with it on timeout.
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise TimeoutError(f"Chromium did not finish within {timeout} s: {' '.join(args[-3:])}") from None
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)   # stray helpers of a finished run
        except ProcessLookupError:
            pass
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def _inject(page: str, folder: Path) -> str:
    snippet = f'<base href="{folder.as_uri()}/">{PROBE}'
    # After <head> (or <html>, or the doctype): anything before the doctype would switch to quirks mode.
    for pattern in (r"<head\b[^>]*>", r"<html\b[^>]*>", r"<!doctype[^>]*>"):
        if m := re.search(pattern, page, re.IGNORECASE):
            return page[:m.end()] + snippet + page[m.end():]
    return snippet + page


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ValueError(f"{path}: not a PNG")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def check_page(html_path: Path, width: int = 1280, height: int = 900, screenshot: Path | bool = True,
               timeout: float = 60.0, chromium: str | None = None) -> dict:
    """Load `html_path` in a `width` x `height` window and return
    {images, images_failed, failed_sources, scroll_width, client_width,
    viewport_width, page_height, overflow, wide_elements, scrolled_tables (the
    captions of tables that scroll sideways inside the page), title, screenshot,
    screenshot_size}. `screenshot`: a path, True (beside the page as
    <stem>.screenshot.png) or False (none taken)."""
    html_path = Path(html_path).resolve()
    chromium = chromium or find_chromium()
    if chromium is None:
        raise FileNotFoundError("Chromium not found: install it or set $CHROMIUM")
    with tempfile.TemporaryDirectory(prefix="check_page.") as tmp:
        copy = Path(tmp) / html_path.name
        copy.write_text(_inject(html_path.read_text(encoding="utf-8"), html_path.parent), encoding="utf-8")
        base = [chromium, *FLAGS, f"--user-data-dir={Path(tmp) / 'profile'}"]
        done = _run(base + [f"--window-size={width},{height}", "--dump-dom", copy.as_uri()], timeout)
        m = re.search(f'{ATTR}="([^"]*)"', done.stdout)
        if m is None:
            raise RuntimeError(f"no measurements from the page (load never fired?); exit {done.returncode}, "
                               f"stderr: {done.stderr[-1500:]}")
        seen = json.loads(html.unescape(m.group(1)))
        seen["overflow"] = seen["scroll_width"] > seen["client_width"]
        seen["screenshot"], seen["screenshot_size"] = None, None
        if screenshot:
            shot = html_path.with_name(f"{html_path.stem}.screenshot.png") if screenshot is True else Path(screenshot)
            shot.parent.mkdir(parents=True, exist_ok=True)
            shot.unlink(missing_ok=True)         # a stale file must not pass for a new screenshot
            # In screenshot mode the window size is the captured area: as tall as the page.
            tall = min(max(seen["page_height"], height), MAX_SHOT_HEIGHT)
            done = _run(base + [f"--window-size={width},{tall}", f"--screenshot={shot}",
                                copy.as_uri()], timeout)
            if not shot.is_file():
                raise RuntimeError(f"no screenshot written; exit {done.returncode}, stderr: {done.stderr[-1500:]}")
            seen["screenshot"], seen["screenshot_size"] = str(shot), _png_size(shot)
    return seen
