"""The figures and markup of the page's first screen as `dashboard/format.js` and `dom.js`
write them, for the cards drawn on the server (`first_screen.py`): the same digits, the same
separators, the same relative times, so that the modules drawing over the server's cards
change nothing (`tests/browser/test_promises.py` compares the two)."""

from __future__ import annotations

import html
import math
import re
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, TypeGuard

# A node: a text, or (tag, attributes, children); None is left out.
Node = str | tuple[str, dict[str, str], list[Any]] | None
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def el(tag: str, attrs: dict[str, str] | None = None, *children: Node) -> Node:
    return (tag, attrs or {}, [c for c in children if c is not None])


def markup(node: Node) -> str:
    """HTML for a node, with no whitespace between elements (as the DOM cards.js builds)."""
    if node is None:
        return ""
    if isinstance(node, str):
        return html.escape(node, quote=False)
    tag, attrs, children = node
    attributes = "".join(f' {k}="{html.escape(v, quote=True)}"' for k, v in attrs.items())
    return f"<{tag}{attributes}>{''.join(markup(c) for c in children)}</{tag}>"


# -- the figures, as format.js writes them -------------------------------------------------
def is_num(v: object) -> TypeGuard[float]:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def js_number(v: float) -> str:
    """`String(v)` in JavaScript for an ordinary number: `67`, not `67.0`."""
    if float(v).is_integer() and abs(v) < 1e21:
        return str(int(v))
    return re.sub(r"e([+-])0*(?=\d)", r"e\1", repr(float(v)))  # 1e-07 -> 1e-7


def to_fixed(v: float, digits: int) -> str:
    """`v.toFixed(digits)`: the exact binary value rounded, halves away from zero (-0: no sign)."""
    text = str(Decimal(abs(v)).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))
    return ("-" if v < 0 else "") + text


def group(text: str) -> str:
    whole, dot, frac = text.partition(".")
    return f"{int(whole):,}" + dot + frac


def fmt_count(v: Any) -> str:
    if not is_num(v):
        return "—"
    return ("-" if v < 0 else "") + group(js_number(abs(v)))


def fmt_usd(v: Any) -> str:
    return ("-" if v < 0 else "") + "$" + group(to_fixed(abs(v), 2)) if is_num(v) else "—"


def fmt_pct(v: Any) -> str:
    return f"{to_fixed(v, 1)} %" if is_num(v) else "—"


def fmt_ratio(v: Any) -> str:
    return fmt_pct(v * 100) if is_num(v) else "—"


def fmt_db(v: Any) -> str:
    return f"{to_fixed(v, 2)} dB" if is_num(v) else "—"


def fmt_ssim(v: Any) -> str:
    return to_fixed(v, 4) if is_num(v) else "—"


def parse_time(iso: Any) -> datetime | None:
    if not isinstance(iso, str) or not iso:
        return None
    try:
        t = datetime.fromisoformat(iso)
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def fmt_relative(t: datetime, now: datetime) -> str:
    diff = math.floor((now - t).total_seconds() + 0.5)  # Math.round
    n = abs(diff)
    if n < 10:
        return "just now"
    text = (
        f"{n} s"
        if n < 60
        else f"{n // 60} min"
        if n < 3600
        else f"{n // 3600} h"
        if n < 86400
        else f"{n // 86400} d"
    )
    return f"{text} ago" if diff >= 0 else f"in {text}"


def iso_ms(t: datetime) -> str:
    """`Date.toISOString()`: UTC, milliseconds, Z."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"
