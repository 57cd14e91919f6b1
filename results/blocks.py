"""A report as a small document model (results/html.py writes it as HTML and Markdown).

    Document(title, subtitle, sections=[Section(title, [Paragraph(text), Table(frame, caption),
             Figure(path, caption), Details(summary, [blocks...])])], provenance={...})
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Union

import numpy as np
import pandas as pd

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# Text that reads as a number ("0.712", "[0.70, 0.72]", "< 0.001", "+1.2%", "0.71 ± 0.01") is right-aligned.
_SIGNS = r"\s\d.,%+\-\u2212\u00b1\u00d7eE<>()\[\]\u221e\u2014"    # digits, signs, brackets, ±, ×, ∞, —
NUMERIC_TEXT = re.compile(rf"^[{_SIGNS}]*\d[{_SIGNS}]*$")


def is_number(value) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, (bool, np.bool_))


# ---- the document model

@dataclass(frozen=True)
class Paragraph:
    text: str

    def __post_init__(self):
        if not isinstance(self.text, str):
            raise TypeError(f"Paragraph text must be a str, got {type(self.text).__name__}")


@dataclass(frozen=True, eq=False)             # eq=False: DataFrames have no truth value to compare by
class Table:
    frame: pd.DataFrame
    caption: str = ""
    formats: Mapping[str, Union[str, Callable[[Any], Any]]] = field(default_factory=dict)
    note: str = ""

    def __post_init__(self):
        if not isinstance(self.frame, pd.DataFrame):
            raise TypeError(f"Table frame must be a pandas DataFrame, got {type(self.frame).__name__}")
        unknown = [c for c in self.formats if c not in self.frame.columns]
        if unknown:
            raise ValueError(f"Table {self.caption!r}: formats for unknown column(s) {unknown}; "
                             f"columns are {list(self.frame.columns)}")
        object.__setattr__(self, "formats", dict(self.formats))


@dataclass(frozen=True)
class Figure:
    path: Path                                # a PNG file, read when the report is written
    caption: str = ""

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))
        if self.path.suffix.lower() != ".png":
            raise ValueError(f"Figure {self.path}: only PNG is embedded; save it with a .png suffix")


@dataclass(frozen=True)
class Details:
    """A collapsible group of blocks (long tables, per-run figures); opened when printed."""
    summary: str
    blocks: tuple = ()

    def __post_init__(self):
        object.__setattr__(self, "blocks", _blocks(self.blocks, f"Details {self.summary!r}"))


Block = Union[Paragraph, Table, Figure, Details]


def _blocks(blocks, where: str) -> tuple:
    blocks = tuple(blocks)
    for b in blocks:
        if not isinstance(b, (Paragraph, Table, Figure, Details)):
            raise TypeError(f"{where}: {type(b).__name__} is not a block; use Paragraph, Table, Figure or Details")
    return blocks


@dataclass(frozen=True)
class Section:
    title: str
    blocks: tuple = ()

    def __post_init__(self):
        object.__setattr__(self, "blocks", _blocks(self.blocks, f"Section {self.title!r}"))


@dataclass(frozen=True)
class Document:
    title: str
    subtitle: str = ""
    sections: tuple = ()
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        sections = tuple(self.sections)
        if not all(isinstance(s, Section) for s in sections):
            raise TypeError("Document sections must be Section objects")
        object.__setattr__(self, "sections", sections)
        object.__setattr__(self, "provenance", dict(self.provenance))
