"""The report as a person sees it at 1280 px: headless Chromium (tests/browser.py)
on the page results.html writes, and on a page broken on purpose, so that the
check is seen to fail when it should."""
from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest

from browser import check_page, chromium_or_skip
from results.blocks import Paragraph, Section, Table
from results.html import write_report
from test_html import sample_document

WIDTH = 1280


@pytest.fixture(scope="module")
def chromium():
    return chromium_or_skip()


@pytest.fixture(scope="module")
def seen(chromium, tmp_path_factory):
    """The sample report (its first figure is 1600 px wide) plus what else tends
    to push a page sideways: a table of 40 columns and a long path in running text."""
    tmp = tmp_path_factory.mktemp("browser")
    doc = sample_document(tmp)
    wide = pd.DataFrame({f"repeat {i} test accuracy": [0.7 + i / 1000, None] for i in range(40)})
    doc = replace(doc, sections=doc.sections + (Section("Every repeat", [
        Paragraph("Checkpoints: " + "runs/part3/2026-11-23T10-00-00/train/" * 6),
        Table(wide, "One column per repeat", formats={c: ".3f" for c in wide.columns}),
    ]),))
    html_path, _ = write_report(doc, tmp / "run")
    return check_page(html_path, width=WIDTH, screenshot=tmp / "report.png", chromium=chromium)


def test_every_image_loads(seen):
    assert seen["images"] == 2 and seen["images_failed"] == 0, seen
    assert seen["title"] == "part3 <quick>"


def test_no_horizontal_overflow_at_1280(seen):
    # the 40-column table scrolls inside its own wrapper instead of widening the page, and is named
    assert not seen["overflow"] and seen["scroll_width"] <= seen["client_width"], seen
    assert [c.split(". ", 1)[1] for c in seen["scrolled_tables"]] == ["One column per repeat"], seen
    assert seen["viewport_width"] == WIDTH


def test_screenshot_is_a_full_width_png(seen):
    width, height = seen["screenshot_size"]
    assert width == WIDTH and height >= seen["page_height"] - 1, seen


def test_a_broken_page_is_reported(chromium, tmp_path):
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><head><title>broken</title></head><body>'
                    '<img src="missing.png" alt="gone"><div id="banner" style="width:2000px">wide</div>'
                    "</body></html>")
    seen = check_page(page, width=WIDTH, screenshot=False, chromium=chromium)
    assert (seen["images"], seen["images_failed"], seen["failed_sources"]) == (1, 1, ["missing.png"])
    assert seen["overflow"] and seen["scroll_width"] >= 2000
    assert seen["wide_elements"] == ["div#banner 2000px"]
    assert seen["screenshot"] is None
