"""Table cells as text: numbers, intervals, p-values and mean +- sd formatted
once for the HTML page and the Markdown alike, and `Missing` for a cell that has
no value but has a reason ("n = 1: no interval"), never "nan" or "None".

    fmt_ci(0.70, 0.72) -> '[0.700, 0.720]'; fmt_p(0.0004) -> '< 0.001'
    format_cell(float("nan")) -> Missing()   # shown as an em dash
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

import numpy as np
import pandas as pd

DASH = "\u2014"


@dataclass(frozen=True)
class Missing:
    """A cell with no value; shows its reason ("n = 1: no interval"), or an em dash.
    Not a str on purpose: pandas 3 turns all-string columns into its string
    dtype, which would strip a str subclass of what it means."""
    reason: str = DASH

    def __str__(self) -> str:
        return self.reason or DASH


# ---- formatting helpers: each returns text, or Missing where there is no number

def _absent(x) -> bool:
    return x is None or x is pd.NA or x is pd.NaT or (isinstance(x, (float, np.floating)) and math.isnan(x))


def fmt_num(x, digits: int = 3, signed: bool = False, why: Optional[str] = None) -> str | Missing:
    """fmt_num(0.71234) -> '0.712'; fmt_num(0.0123, signed=True) -> '+0.012'; None -> Missing(why)."""
    return Missing(why or DASH) if _absent(x) else format(float(x), f"{'+' if signed else ''}.{digits}f")


def fmt_ci(low, high, digits: int = 3, why: Optional[str] = None) -> str | Missing:
    """fmt_ci(0.70, 0.72) -> '[0.700, 0.720]'; either end None -> Missing(why)."""
    if _absent(low) or _absent(high):
        return Missing(why or DASH)
    return f"[{fmt_num(low, digits)}, {fmt_num(high, digits)}]"


def fmt_p(p, why: Optional[str] = None) -> str | Missing:
    """fmt_p(0.0004) -> '< 0.001'; fmt_p(0.0312) -> '0.031'; None -> Missing(why)."""
    if _absent(p):
        return Missing(why or DASH)
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def fmt_mean_sd(mean, sd, digits: int = 3, why: Optional[str] = None) -> str | Missing:
    """fmt_mean_sd(0.712, 0.01) -> '0.712 ± 0.010'; sd None -> '0.712 ± —' (or '0.712 (why)')."""
    if _absent(mean):
        return Missing(why or DASH)
    if _absent(sd):
        return f"{fmt_num(mean, digits)} ({why})" if why else f"{fmt_num(mean, digits)} \u00b1 {DASH}"
    return f"{fmt_num(mean, digits)} \u00b1 {fmt_num(sd, digits)}"


def format_cell(value, spec: Union[str, Callable[[Any], Any], None] = None) -> str | Missing:
    """One table cell as text: Missing passes through, None/NaN -> em dash
    (before `spec` is applied, so a spec only ever sees a value)."""
    if isinstance(value, Missing):
        return value
    if np.ndim(value) == 0 and not isinstance(value, str) and _absent(value):
        return Missing()
    if isinstance(value, np.generic):
        value = value.item()                  # numpy scalars format like Python ones
    if callable(spec):
        text = spec(value)
        return Missing() if text is None else text if isinstance(text, Missing) else str(text)
    if spec:
        return format(value, spec)
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else ("\u221e" if value > 0 else "-\u221e")
    return str(value)


def mean_sd_column(frame, prefix: str) -> list:
    """A table's `<prefix>_mean` and `<prefix>_std` columns as one column of 'mean ± sd' cells,
    for a page (the CSV keeps both numbers)."""
    return [fmt_mean_sd(m, s) for m, s in zip(frame[f"{prefix}_mean"], frame[f"{prefix}_std"])]
