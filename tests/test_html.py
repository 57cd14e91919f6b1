"""results.html: the document model rendered to HTML and Markdown, read back
the way a browser's parser and a Markdown reader would."""
from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import pytest

from results.cells import DASH, Missing, fmt_ci, fmt_mean_sd, fmt_num, fmt_p, format_cell
from results.blocks import Details, Document, Figure, Paragraph, Section, Table
from results.html import write_report
from results.stats import compare, summarize

SCRIPT = "<script>alert(1)</script>"


def png(path: Path, title: str, size=(4, 2.5)) -> Path:
    fig, ax = plt.subplots(figsize=size)
    ax.plot([0, 1, 2], [0.1, 0.5, 0.6])
    ax.set_title(title)
    fig.savefig(path, format="png", dpi=80)
    plt.close(fig)
    return path


def sample_document(tmp_path: Path) -> Document:
    """Two sections, a table with None values, two figures (one outside the
    report folder, one inside a Details block) and provenance."""
    (tmp_path / "plots").mkdir()
    # curves: 1600 px wide, wider than the page, as a four-panel comparison figure is
    curves = png(tmp_path / "plots" / "curves.png", "curves", size=(20, 3))
    weights = png(tmp_path / "plots" / "weights.png", "weights")
    groups = {"cnn_3": [0.712, 0.705, 0.721], "cnn_4": [0.731, 0.744, 0.738], "solo": [0.69]}
    summaries = {g: summarize(v) for g, v in groups.items()}
    summary = pd.DataFrame({
        "group": list(groups),
        "n": [s.n for s in summaries.values()],
        "mean": [s.mean for s in summaries.values()],
        "std": [s.std for s in summaries.values()],                       # None for "solo"
        "95% CI": [(s.ci_low, s.ci_high, s.why) for s in summaries.values()],
        "note": ["tie | close", SCRIPT, float("nan")],
    })
    c = compare(groups["cnn_3"], groups["cnn_4"])
    solo = compare(groups["cnn_3"], groups["solo"])
    comparisons = pd.DataFrame({
        "variant": ["cnn_4", "solo"],
        "diff": [c.diff, solo.diff],
        "95% CI": [fmt_ci(c.ci_low, c.ci_high), fmt_ci(solo.ci_low, solo.ci_high, why=solo.why)],
        "p": [fmt_p(c.p), fmt_p(solo.p, why=solo.why)],
    })
    return Document(
        title="part3 <quick>", subtitle="Adam & friends, 3 repeats",
        sections=[
            Section("Test accuracy", [
                Paragraph("Mean over repeats; the interval is the t interval of the mean."),
                Table(summary, "Test accuracy", formats={"mean": ".3f", "std": ".4f",
                                                          "95% CI": lambda ci: fmt_ci(ci[0], ci[1], why=ci[2])}),
                Figure(curves, "Validation accuracy: mean and 95% interval"),
            ]),
            Section("Against cnn_3", [
                Table(comparisons, "Variant minus reference (cnn_3)", formats={"diff": "+.3f"},
                      note="Welch's t; p-values not adjusted."),
                Details("First-layer weights", [Figure(weights, "cnn_4, best repeat")]),
            ]),
        ],
        provenance={"code": "c4eeb15", "versions": {"torch": "2.5.1", "ray": "2.60.0"}, "cpu": SCRIPT},
    )


class Page(HTMLParser):
    """The tags, image sources, captions and visible text of a page."""

    def __init__(self):
        super().__init__()
        self.tags, self.images, self.cells, self.captions, self.text, self.scripts = [], [], [], [], [], []
        self._open = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
        if tag in ("td", "caption", "script", "style"):
            self._open.append([tag, attrs, ""])

    def handle_endtag(self, tag):
        if self._open and self._open[-1][0] == tag:
            tag, attrs, text = self._open.pop()
            {"td": self.cells, "caption": self.captions, "script": self.scripts}.get(tag, []).append(
                (text, attrs) if tag == "td" else text)

    def handle_data(self, data):
        if self._open:
            self._open[-1][2] += data
        if not self._open or self._open[-1][0] not in ("script", "style"):
            self.text.append(data)


@pytest.fixture()
def report(tmp_path):
    out = tmp_path / "run"
    html_path, md_path = write_report(sample_document(tmp_path), out)
    return out, html_path, md_path


def test_write_report_files(report):
    out, html_path, md_path = report
    assert (html_path, md_path) == (out / "report.html", out / "report.md")
    assert sorted(p.name for p in out.iterdir()) == ["figures", "report.html", "report.md"]  # no temp files left


def test_html_embeds_figures_tables_and_escapes(report):
    _, html_path, _ = report
    page = Page()
    page.feed(html_path.read_text(encoding="utf-8"))
    assert len(page.images) == 2 and all(i["src"].startswith("data:image/png;base64,") for i in page.images)
    assert [i["alt"] for i in page.images] == ["Validation accuracy: mean and 95% interval", "cnn_4, best repeat"]
    assert (page.images[0]["width"], page.images[1]["width"]) == ("1600", "320")  # inches x 80 dpi, from the PNG
    assert page.tags.count("table") == 3 and page.tags.count("details") == 1
    assert page.captions == ["Table 1. Test accuracy", "Table 2. Variant minus reference (cnn_3)",
                             "What produced this report"]
    cells = [text for text, _ in page.cells]
    # values: results.stats on the groups above (its numbers are checked against scipy in test_stats)
    assert cells[:6] == ["cnn_3", "3", "0.713", "0.0080", "[0.693, 0.733]", "tie | close"]
    assert cells[12:18] == ["solo", "1", "0.690", DASH, "n = 1: no spread or interval", DASH]
    assert cells[18:22] == ["cnn_4", "+0.025", "[0.008, 0.042]", "0.015"]
    assert cells[22:26] == ["solo", "-0.023"] + ["n = 1 on one side: no variance, no interval or test"] * 2
    classes = [attrs.get("class") for _, attrs in page.cells]
    assert classes[:6] == [None, "num", "num", "num", "num", None]     # numbers right-aligned
    assert classes[15:18] == ["num missing", "num missing", "missing"]  # a reason keeps its column's alignment
    # the text that went in comes out as text: the cell, the title and provenance are not markup
    assert SCRIPT in cells and "part3 <quick>" in "".join(page.text)
    assert page.tags.count("script") == 1 and "alert" not in page.scripts[0]
    visible = " ".join(page.text)
    assert not re.search(r"\b(nan|None|NaN)\b", visible), visible
    assert "Contents" in visible and 'href="#s2"' in html_path.read_text()


def test_markdown_tables_and_figure_links(report):
    out, _, md_path = report
    md = md_path.read_text(encoding="utf-8")
    links = re.findall(r"!\[([^\]]*)\]\(([^)]+)\)", md)
    assert [alt for alt, _ in links] == ["Validation accuracy: mean and 95% interval", "cnn_4, best repeat"]
    assert all((out / link).is_file() and link.startswith("figures/") for _, link in links)
    assert "| group | n | mean | std | 95% CI | note |" in md
    assert "| --- | ---: | ---: | ---: | ---: | --- |" in md         # numbers right-aligned, reasons too
    assert "| cnn_3 | 3 | 0.713 | 0.0080 | [0.693, 0.733] | tie \\| close |" in md
    assert "| solo | 1 | 0.690 | — | *n = 1: no spread or interval* | — |" in md
    assert "&lt;script&gt;" not in md and "&lt;script>alert(1)&lt;/script>" in md   # no raw HTML
    assert "| code | c4eeb15 |" in md and '| versions | {"ray": "2.60.0", "torch": "2.5.1"} |' in md
    assert "### First-layer weights" in md
    assert not re.search(r"\b(nan|None|NaN)\b", md)
    for table in re.findall(r"(?m)(?:^\|.*\n)+", md):          # every row as many cells as its header
        widths = {len(re.split(r"(?<!\\)\|", line)) for line in table.splitlines()}
        assert len(widths) == 1, table


def test_figures_inside_the_folder_are_linked_not_copied(tmp_path):
    fig = png(tmp_path / "compare.png", "c")
    doc = Document("t", sections=[Section("s", [Figure(fig, "c")])])
    _, md_path = write_report(doc, tmp_path)
    assert "![c](compare.png)" in md_path.read_text() and not (tmp_path / "figures").exists()


def test_two_figures_with_one_name_both_survive(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    doc = Document("t", sections=[Section("s", [Figure(png(tmp_path / "a" / "x.png", "a"), "a"),
                                                Figure(png(tmp_path / "b" / "x.png", "b"), "b")])])
    _, md_path = write_report(doc, tmp_path / "out")
    assert "(figures/x.png)" in md_path.read_text() and "(figures/x-2.png)" in md_path.read_text()


def test_a_figure_already_in_figures_keeps_its_name(tmp_path):
    (tmp_path / "out" / "figures").mkdir(parents=True), (tmp_path / "elsewhere").mkdir()
    inside = png(tmp_path / "out" / "figures" / "x.png", "inside")
    before = inside.read_bytes()
    doc = Document("t", sections=[Section("s", [Figure(png(tmp_path / "elsewhere" / "x.png", "outside"), "o"),
                                                Figure(inside, "i")])])
    _, md_path = write_report(doc, tmp_path / "out")
    assert "![o](figures/x-2.png)" in md_path.read_text() and "![i](figures/x.png)" in md_path.read_text()
    assert inside.read_bytes() == before


def test_model_refuses_what_it_cannot_render(tmp_path):
    with pytest.raises(ValueError, match="unknown column"):
        Table(pd.DataFrame({"a": [1]}), formats={"b": ".3f"})
    with pytest.raises(ValueError, match="PNG"):
        Figure(tmp_path / "x.svg")
    with pytest.raises(TypeError, match="not a block"):
        Section("s", ["just a string"])
    with pytest.raises(FileNotFoundError, match="write the figure before"):
        write_report(Document("t", sections=[Section("s", [Figure(tmp_path / "missing.png")])]), tmp_path)
    assert not (tmp_path / "report.html").exists()       # nothing half-written
    with pytest.raises(ValueError, match="Table 'p'.*does not fit its format"):
        write_report(Document("t", sections=[Section("s", [Table(pd.DataFrame({"a": ["x"]}), "p", {"a": ".3f"})])]),
                     tmp_path)


def test_format_helpers():
    assert fmt_p(0.0004) == "< 0.001" and fmt_p(0.0312) == "0.031" and fmt_p(None, why="n = 1") == Missing("n = 1")
    assert fmt_ci(0.7, 0.72) == "[0.700, 0.720]" and str(fmt_ci(None, None)) == DASH
    assert fmt_ci(None, 0.7, why="no spread") == Missing("no spread")
    assert fmt_mean_sd(0.712, 0.01) == "0.712 \u00b1 0.010" and fmt_mean_sd(0.7, None) == f"0.700 \u00b1 {DASH}"
    assert fmt_mean_sd(0.7, None, why="n = 1") == "0.700 (n = 1)"
    assert fmt_num(0.0123, signed=True) == "+0.012" and str(fmt_num(float("nan"))) == DASH
    assert [str(format_cell(v)) for v in (None, float("nan"), pd.NA, 0.123456, float("inf"), 3)] == [
        DASH, DASH, DASH, "0.1235", "\u221e", "3"]


def test_long_names_may_wrap_and_numbers_may_not(tmp_path):
    """A long group name or layer spec (17 characters or more) gets line-break opportunities
    (<wbr>, nothing a reader copies) after _ , = and /, so that it wraps instead of widening
    its table; short names and numbers stay whole (176,402 is one piece); text stays escaped."""
    frame = pd.DataFrame({"group": ["landscape_vgg_a_bn_lr0.0001", "cross_entropy"], "parameters": ["176,402", "1,000"],
                          "changes": ["spec=Conv-5x5x6,ReLU", "a<b>_c_and_a_long_tail"]})
    html_path, md_path = write_report(Document("t", sections=[Section("s", [Table(frame, "names")])]), tmp_path)
    page = html_path.read_text()
    assert "<td>landscape_<wbr>vgg_<wbr>a_<wbr>bn_<wbr>lr0.0001</td>" in page
    assert "<td>spec=<wbr>Conv-5x5x6,<wbr>ReLU</td>" in page and "<td>a&lt;b&gt;_<wbr>c_<wbr>and_<wbr>a_<wbr>long_<wbr>tail</td>" in page
    assert "<td>cross_entropy</td>" in page   # a short name stays whole
    assert '<td class="num">176,402</td>' in page
    assert "wbr" not in md_path.read_text()
