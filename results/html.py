"""A report (the document model of results/blocks.py), written as one self-contained HTML page
(figures inlined as base64 PNG, no network, opens from disk) and as Markdown
with the same tables (figures as PNG files beside it, for a write-up).

    doc = Document("part3: five architectures", "Adam, 15 epochs, 10 repeats", sections=[
        Section("Test accuracy", [
            Table(frame, "Test accuracy over repeats", formats={"mean": ".3f", "95% CI": lambda ci: fmt_ci(*ci)}),
            Figure(out / "compare.png", "Curves: mean and 95% interval over repeats"),
            Details("Every repeat", [Table(per_repeat)]),
        ]),
    ], provenance={"code": "c4eeb15", "torch": "2.5.1"})
    write_report(doc, out)      # out/report.html, out/report.md (+ out/figures/ for figures kept elsewhere)

Table cells (results/cells.py): None and NaN show as an em dash, `Missing("n = 1: no interval")`
shows its reason; other values go through `formats[column]` (a format spec
such as ".3f", or a callable returning text) and never print as "nan"/"None".
The frame's index is not shown: `reset_index()` first when it matters.
"""
from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Callable, Mapping, Optional
from urllib.parse import quote

import jinja2
import markupsafe

from results.blocks import NUMERIC_TEXT, PNG_SIGNATURE, Details, Document, Figure, Paragraph, Table, is_number
from results.cells import DASH, Missing, format_cell
from results.io import save_bytes, save_text

# ---- view model shared by both renderers: numbered, formatted, no HTML in it

def _table_view(t: Table) -> dict:
    columns = [" / ".join(map(str, c)) if isinstance(c, tuple) else str(c) for c in t.frame.columns]
    raw = [list(r) for r in t.frame.itertuples(index=False, name=None)]
    specs = [t.formats.get(c) for c in t.frame.columns]
    try:
        text = [[format_cell(v, s) for v, s in zip(r, specs)] for r in raw]
    except (TypeError, ValueError) as e:      # say which table and column, not just "Unknown format code"
        raise ValueError(f"Table {t.caption!r}: a cell does not fit its format ({e}); formats: {t.formats}") from e
    num = []
    for j in range(len(columns)):             # a column is numeric when every present cell is
        present = [(r[j], tr[j]) for r, tr in zip(raw, text) if not isinstance(tr[j], Missing)]
        num.append(bool(present) and all(is_number(v) or NUMERIC_TEXT.match(s) for v, s in present))
    rows = [[{"text": str(s), "missing": isinstance(s, Missing),
              "cls": " ".join(["num"] * n + ["missing"] * isinstance(s, Missing))} for s, n in zip(tr, num)]
            for tr in text]
    return {"columns": [{"name": c, "num": n} for c, n in zip(columns, num)], "rows": rows}


def _png(path: Path) -> bytes:
    if not path.is_file():
        raise FileNotFoundError(f"Figure {path}: no such file; write the figure before the report")
    data = path.read_bytes()
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError(f"Figure {path}: not a PNG file (the first bytes are not the PNG signature)")
    return data


def _view(blocks, counters: dict, figure: Callable[[Figure], dict]) -> list:
    out = []
    for b in blocks:
        if isinstance(b, Paragraph):
            out.append({"kind": "paragraph", "text": b.text})
        elif isinstance(b, Table):
            counters["table"] += 1
            out.append({"kind": "table", "number": counters["table"], "caption": b.caption,
                        "note": b.note, **_table_view(b)})
        elif isinstance(b, Figure):
            counters["figure"] += 1
            out.append({"kind": "figure", "number": counters["figure"], "caption": b.caption,
                        "alt": b.caption or b.path.stem, **figure(b)})
        else:
            out.append({"kind": "details", "summary": b.summary, "blocks": _view(b.blocks, counters, figure)})
    return out


def _doc_view(doc: Document, figure: Callable[[Figure], dict]) -> dict:
    counters = {"table": 0, "figure": 0}
    sections = [{"title": s.title, "id": f"s{i}", "blocks": _view(s.blocks, counters, figure)}
                for i, s in enumerate(doc.sections, 1)]
    provenance = [(str(k), v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str))
                  for k, v in doc.provenance.items()]
    return {"title": doc.title, "subtitle": doc.subtitle, "sections": sections, "provenance": provenance}


# ---- HTML

_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
*{box-sizing:border-box}
body{font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#1b1b1b;
 background:#fff;max-width:72rem;margin:0 auto;padding:1.5rem 2rem 4rem;overflow-wrap:break-word}
h1{font-size:1.8rem;margin:0 0 .2rem}h2{font-size:1.35rem;margin:2.2rem 0 .6rem;border-bottom:1px solid #ddd}
.subtitle{color:#555;margin:0 0 1rem}
nav.toc{background:#f6f7f9;border:1px solid #e3e5e8;border-radius:6px;padding:.5rem 1rem;display:inline-block}
nav.toc ol{margin:.2rem 0;padding-left:1.4rem}
.table-wrap{overflow-x:auto;max-width:100%;margin:1rem 0}
table{border-collapse:collapse;font-size:.92rem}
caption{caption-side:top;text-align:left;font-weight:600;padding:.3rem 0}
th,td{padding:.3rem .65rem;border-bottom:1px solid #e3e3e3;text-align:left;vertical-align:top}
thead th{border-bottom:2px solid #999}
tbody tr:nth-child(even){background:#f7f8fa}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.missing{color:#777}.num.missing,th.num{white-space:normal}
.note{color:#555;font-size:.9rem;margin-top:-.5rem}
figure{margin:1.5rem 0}img{max-width:100%;height:auto;display:block}
figcaption{color:#444;font-size:.92rem;margin-top:.3rem}
details{border:1px solid #e3e3e3;border-radius:6px;padding:.4rem .9rem;margin:1rem 0}
summary{cursor:pointer;font-weight:600}
table.provenance{table-layout:fixed;width:100%}
table.provenance th{width:14rem}
table.provenance td{overflow-wrap:anywhere;font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.85rem}
@page{margin:14mm}
@media print{body{max-width:none;padding:0;font-size:11pt}nav.toc{display:none}
 .table-wrap{overflow:visible}table,figure{break-inside:avoid}h2,caption{break-after:avoid}
 tbody tr:nth-child(even){print-color-adjust:exact;-webkit-print-color-adjust:exact}}
</style>
<script>/* printed copies show what is folded away on screen */
addEventListener("beforeprint",()=>document.querySelectorAll("details").forEach(d=>d.open=true));</script>
</head><body>
{%- macro block(b) %}
{%- if b.kind == "paragraph" %}
<p>{{ b.text }}</p>
{%- elif b.kind == "table" %}
<div class="table-wrap"><table>
<caption>Table {{ b.number }}.{% if b.caption %} {{ b.caption }}{% endif %}</caption>
<thead><tr>
{%- for c in b.columns %}<th scope="col"{% if c.num %} class="num"{% endif %}>{{ c.name }}</th>{% endfor -%}
</tr></thead>
<tbody>
{%- for row in b.rows %}
<tr>{% for cell in row %}<td{% if cell.cls %} class="{{ cell.cls }}"{% endif %}>{{ cell.text if "num" in cell.cls else cell.text | breakable }}</td>{% endfor %}</tr>
{%- endfor %}
</tbody></table></div>
{%- if b.note %}
<p class="note">{{ b.note }}</p>
{%- endif %}
{%- elif b.kind == "figure" %}
<figure><img src="{{ b.src }}" alt="{{ b.alt }}" width="{{ b.width }}" height="{{ b.height }}">
<figcaption>Figure {{ b.number }}.{% if b.caption %} {{ b.caption }}{% endif %}</figcaption></figure>
{%- else %}
<details><summary>{{ b.summary }}</summary>
{%- for c in b.blocks %}{{ block(c) }}{% endfor %}
</details>
{%- endif %}
{%- endmacro %}
<header><h1>{{ title }}</h1>{% if subtitle %}<p class="subtitle">{{ subtitle }}</p>{% endif %}</header>
<nav class="toc" aria-label="Contents"><strong>Contents</strong><ol>
{%- for s in sections %}<li><a href="#{{ s.id }}">{{ s.title }}</a></li>{% endfor %}
{%- if provenance %}<li><a href="#provenance">Provenance</a></li>{% endif %}</ol></nav>
{%- for s in sections %}
<section id="{{ s.id }}"><h2>{{ s.title }}</h2>
{%- for b in s.blocks %}{{ block(b) }}{% endfor %}
</section>
{%- endfor %}
{%- if provenance %}
<section id="provenance"><h2>Provenance</h2>
<div class="table-wrap"><table class="provenance"><caption>What produced this report</caption><tbody>
{%- for k, v in provenance %}
<tr><th scope="row">{{ k }}</th><td>{{ v }}</td></tr>
{%- endfor %}
</tbody></table></div></section>
{%- endif %}
</body></html>
"""

def _embed(fig: Figure) -> dict:
    data = _png(fig.path)
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")  # IHDR
    return {"src": "data:image/png;base64," + base64.b64encode(data).decode("ascii"),
            "width": width, "height": height}


_BREAK_AFTER = re.compile(r"([_,=/])(?=\S)")
_LONG_WORD = re.compile(r"\S{17,}")   # shorter names ("cross_entropy") stay whole


def _breakable(text: str) -> markupsafe.Markup:
    """Escaped text in which every long word gets a line-break opportunity (<wbr>) after
    _ , = and /, so that a long name ("landscape_vgg_a_bn_lr0.0001", a layer spec) wraps
    instead of widening its table; nothing is added to what a reader copies."""
    escaped = str(markupsafe.escape(text))
    return markupsafe.Markup(_LONG_WORD.sub(lambda m: _BREAK_AFTER.sub(r"\1<wbr>", m.group()), escaped))


_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
_ENV.filters["breakable"] = _breakable
_PAGE = _ENV.from_string(_TEMPLATE)


def render_html(doc: Document) -> str:
    """The whole page as one string; reads each figure's PNG."""
    return _PAGE.render(**_doc_view(doc, _embed))


# ---- Markdown

def _md(text: str, cell: bool = False) -> str:
    """Literal text in Markdown: no emphasis, links or raw HTML by accident."""
    text = re.sub(r"([\\`*|])", r"\\\1", str(text))
    text = re.sub(r"\](?=[(\[:])", r"\\]", text)     # no link can form; "[0.70, 0.72]" stays as is
    text = re.sub(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])", r"\\_", text)   # cnn_3 stays readable
    text = text.replace("<", "&lt;")
    if cell:
        return " ".join(text.split()) or " "
    return re.sub(r"(?m)^(\s*)([#>+\-]|\d+\.)(?=\s)", r"\1\\\2", text)  # no headings/lists/quotes


def _md_table(columns: list, rows: list) -> list:
    lines = ["| " + " | ".join(_md(c["name"], True) for c in columns) + " |",
             "| " + " | ".join("---:" if c["num"] else "---" for c in columns) + " |"]
    for row in rows:
        cells = [("*" + _md(c["text"], True) + "*") if c["missing"] and c["text"] != DASH else _md(c["text"], True)
                 for c in row]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _md_blocks(blocks: list, level: int) -> list:
    out = []
    for b in blocks:
        if b["kind"] == "paragraph":
            out += [_md(b["text"]), ""]
        elif b["kind"] == "table":
            out += [f"**Table {b['number']}.**" + (f" {_md(b['caption'])}" if b["caption"] else ""), ""]
            out += _md_table(b["columns"], b["rows"]) + [""]
            out += [f"*{_md(b['note'])}*", ""] if b["note"] else []
        elif b["kind"] == "figure":
            out += [f"![{_md(b['alt'], True)}]({b['link']})", ""]
            out += [f"*Figure {b['number']}.*" + (f" {_md(b['caption'])}" if b["caption"] else ""), ""]
        else:   # folding is an HTML nicety: a write-up gets a sub-heading
            out += ["#" * min(level, 6) + " " + _md(b["summary"], True), ""] + _md_blocks(b["blocks"], level + 1)
    return out


def render_markdown(doc: Document, links: Optional[Mapping[Path, str]] = None) -> str:
    """GitHub-flavoured Markdown. `links` maps a figure's path to its link
    (relative to the report folder); by default the path as given."""
    links = links or {}
    view = _doc_view(doc, lambda f: {"link": quote(links.get(f.path, f.path.as_posix()))})
    out = [f"# {_md(view['title'], True)}", ""] + ([f"*{_md(view['subtitle'])}*", ""] if view["subtitle"] else [])
    for s in view["sections"]:
        out += [f"## {_md(s['title'], True)}", ""] + _md_blocks(s["blocks"], 3)
    if view["provenance"]:
        out += ["## Provenance", "", "| key | value |", "| --- | --- |"]
        out += [f"| {_md(k, True)} | {_md(v, True)} |" for k, v in view["provenance"]] + [""]
    return "\n".join(out).rstrip() + "\n"


def _figures(blocks) -> list:
    found = []
    for b in blocks:
        found += [b] if isinstance(b, Figure) else _figures(b.blocks) if isinstance(b, Details) else []
    return found


def place_figures(doc: Document, folder: Path) -> dict:
    """Each figure's link relative to `folder`; figures outside it are copied
    into folder/figures/ (folder/figures belongs to the report: a rerun
    overwrites its copies; two different files with one name get -2, -3)."""
    folder = Path(folder).resolve()
    figures = [(f, f.path.resolve()) for s in doc.sections for f in _figures(s.blocks)]
    links = {f.path: src.relative_to(folder).as_posix() for f, src in figures if src.is_relative_to(folder)}
    # name in figures/ -> the file it holds; a figure already there keeps its name
    claimed = {src.name: src for _, src in figures if src.parent == folder / "figures"}
    for fig, source in figures:
        if fig.path in links:
            continue
        k, name = 1, f"{source.stem}.png"
        while claimed.get(name, source) != source:      # taken by another file: the next suffix
            k += 1
            name = f"{source.stem}-{k}.png"
        if name not in claimed:
            data, target = _png(fig.path), folder / "figures" / name
            if not (target.is_file() and target.read_bytes() == data):
                save_bytes(target, data)
            claimed[name] = source
        links[fig.path] = f"figures/{name}"
    return links


def write_report(doc: Document, folder: Path) -> tuple[Path, Path]:
    """Writes folder/report.html and folder/report.md, each atomically;
    both are rendered before either is written. Returns their paths."""
    folder = Path(folder)
    html = render_html(doc)
    markdown = render_markdown(doc, place_figures(doc, folder))
    paths = folder / "report.html", folder / "report.md"
    for path, text in zip(paths, (html, markdown)):
        save_text(path, text)
    return paths
