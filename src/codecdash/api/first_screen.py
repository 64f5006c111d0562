"""The headline cards drawn into index.html on the server, so that the first paint already
shows their figures and the page's Largest Contentful Paint is its first paint.

`draw_first_screen` fills the four headline cards' `.card-body` (Total Experiments, Best
Compression, Best Quality, Monthly Cost) with the same markup `dashboard/cards.js` builds
from the same snapshot, and marks them drawn (`is-drawn`) so that they show before the
modules run; `app.js` then draws the same figures over them, changing in place only what
differs (a relative time, a link's path), so that no element is put in anew. The rest of the
page stays hidden (`main.is-loading`) until the modules have drawn it, as before.

It draws nothing when something the modules would show above the cards is due (the demo
banner, the empty state's first steps, a failing source), so that the cards are never pushed
down after the first paint; the modules then draw everything, as before. The alert strip
above the cards is drawn too (`alerts.js` keeps each alert's element) in `serve`, which
knows the alerts; a static export has no strip. A drawn page keeps its module tags in a
<template> that `theme.js` puts in after the first paint (MODULES_TEMPLATE).
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from codecdash.api.page_figures import (
    MONTHS,
    Node,
    el,
    fmt_count,
    fmt_db,
    fmt_pct,
    fmt_ratio,
    fmt_relative,
    fmt_ssim,
    fmt_usd,
    is_num,
    iso_ms,
    js_number,
    markup,
    parse_time,
    to_fixed,
)
from codecdash.codec_metrics import ms_ssim_db

DRAWN = "is-drawn"


# -- the pieces of a card, as cards.js and dom.js build them -------------------------------
def missing() -> Node:
    return el(
        "span",
        {"class": "missing", "title": "not available"},
        el("span", {"aria-hidden": "true"}, "—"),
        el("span", {"class": "sr-only"}, "not available"),
    )


def stat(
    value: Node, unit: str | None = None, facts: Iterable[tuple[str, Node]] = (), *extra: Node
) -> list[Node]:
    rows = [
        el(
            "div",
            {"class": "fact"},
            el("dt", {}, label),
            el("dd", {}, missing() if v is None else v),
        )
        for label, v in facts
    ]
    return [
        el(
            "p",
            {"class": "stat"},
            el("span", {"class": "stat-value"}, missing() if value is None else value),
            el("span", {"class": "stat-unit"}, unit) if unit else None,
        ),
        *extra,
        el("dl", {"class": "facts"}, *rows) if rows else None,
    ]


def note(text: str, cls: str = "stat-note") -> Node:
    return el("p", {"class": cls}, text)


def target_bar(value: Any, top: Any, label: str, warn: bool = False) -> Node:
    if not is_num(value) or not is_num(top) or top <= 0:
        return None
    return el(
        "progress",
        {
            "class": "bar bar-warn" if warn else "bar",
            "max": js_number(top),
            "value": js_number(max(0, min(value, top))),
            "aria-label": label,
        },
    )


def gap_line(value: Any, target: Any, fmt: Callable[[float], str], unit_word: str) -> Node:
    if not is_num(value) or not is_num(target):
        return None
    if value >= target:
        return note("Target reached", "stat-note good")
    return note(f"{fmt(target - value)}{unit_word} below target")


def experiment_link(exp_id: Any, snap: dict[str, Any]) -> Node:
    """The link cards.js makes (its path is the page's own, which app.js puts in)."""
    if not exp_id:
        return None
    recent = snap.get("recent_experiments") or []
    found: dict[str, Any] = next((e for e in recent if e.get("id") == exp_id), {})
    href = "?" + urlencode({"exp": exp_id})
    return el(
        "p",
        {"class": "card-link"},
        el(
            "a",
            {"href": href, "data-exp": str(exp_id), "class": "exp-link"},
            f"Open {found.get('name') or exp_id}",
        ),
    )


def quality_bar(snap: dict[str, Any], value: float, target: Any, use_ssim: bool) -> list[Node]:
    field = "best_ms_ssim" if use_ssim else "best_psnr_db"
    quality = (snap.get("progress") or {}).get("quality") or []
    first = next((p.get(field) for p in quality if p and is_num(p.get(field))), None)
    if first is None or not is_num(target):
        return []

    def db(v: float) -> float:
        return ms_ssim_db(min(v, 1 - 1e-12)) if use_ssim else v

    fmt = fmt_ssim if use_ssim else fmt_db
    name = "MS-SSIM" if use_ssim else "PSNR"
    span = db(target) - db(first)
    if span <= 0:
        return []
    gained = max(0.0, min(db(value) - db(first), span))
    pct = math.floor(gained / span * 100 + 0.5)
    return [
        el(
            "progress",
            {
                "class": "bar",
                "max": to_fixed(span, 3),
                "value": to_fixed(gained, 3),
                "aria-label": f"{name}: {pct} % of the way in dB from the first result, "
                f"{fmt(first)}, to the {fmt(target)} target",
            },
        ),
        note(
            f"Bar: dB gained from the first result ({fmt(first)}) to the target",
            "stat-note scale-note",
        ),
    ]


def costs_as_of(snap: dict[str, Any], static: bool, now: datetime) -> Node:
    at = parse_time(snap.get("costs_as_of"))
    if at is None or (snap.get("costs_live") is True and not static):
        return None
    iso = iso_ms(at)
    local = at.astimezone(UTC)
    when = f"{local.day} {MONTHS[local.month - 1]} {local:%H:%M}"
    return el(
        "p",
        {"class": "stat-note as-of"},
        "Costs as of ",
        el("time", {"datetime": iso, "title": iso}, when),
        " (",
        el("time", {"datetime": iso, "title": iso, "class": "rel-time"}, fmt_relative(at, now)),
        ")",
    )


# -- the four headline cards ---------------------------------------------------------------
def total_experiments(snap: dict[str, Any], **_: Any) -> list[Node]:
    s = snap.get("summary") or {}
    rate = s.get("success_rate")
    return stat(
        fmt_count(s.get("total_experiments")),
        "experiments",
        [
            ("Running", fmt_count(s.get("running"))),
            ("Last 24 h", fmt_count(s.get("experiments_24h"))),
            ("Success rate", fmt_ratio(rate) if is_num(rate) else None),
        ],
    )


def best_compression(snap: dict[str, Any], **_: Any) -> list[Node]:
    best = (snap.get("summary") or {}).get("best_compression") or {}
    targets = snap.get("targets") or {}
    target = targets.get("compression_pct")
    how = None
    if (best.get("metric") or targets.get("compression_metric")) == "bd_rate":
        against = f" against {best['anchor']}" if best.get("anchor") else ""
        how = note(f"Bitrate saved at equal quality (BD-rate){against}")
    value = best.get("value_pct")
    if not is_num(value):
        return stat(
            missing(), f"target {fmt_pct(target)}", (), note("No completed experiment yet."), how
        )
    label = f"Bitrate reduction: {fmt_pct(value)} of the {fmt_pct(target)} target"
    return stat(
        fmt_pct(value),
        f"of {fmt_pct(target)} target",
        (),
        target_bar(value, target, label),
        gap_line(value, target, lambda v: to_fixed(v, 1), " points"),
        how,
        experiment_link(best.get("experiment_id"), snap),
    )


def best_quality(snap: dict[str, Any], **_: Any) -> list[Node]:
    best = (snap.get("summary") or {}).get("best_quality") or {}
    targets = snap.get("targets") or {}
    use_ssim = (best.get("metric") or targets.get("quality_metric")) == "ms_ssim"
    value = best.get("ms_ssim" if use_ssim else "psnr_db")
    target = targets.get("ms_ssim" if use_ssim else "psnr_db")
    fmt = fmt_ssim if use_ssim else fmt_db
    unit = f"{'MS-SSIM' if use_ssim else 'PSNR'}, target {fmt(target)}"
    if not is_num(value):
        return stat(missing(), unit, (), note("No completed experiment yet."))

    def gap(v: float) -> str:
        return to_fixed(v, 4) if use_ssim else f"{to_fixed(v, 2)} dB"

    return stat(
        fmt(value),
        unit,
        (),
        *quality_bar(snap, value, target, use_ssim),
        gap_line(value, target, gap, ""),
        experiment_link(best.get("experiment_id"), snap),
    )


def over_budget(snap: dict[str, Any]) -> bool:
    """The forecast is over the budget: the Monthly Cost card is marked `is-warning`."""
    forecast = (snap.get("summary") or {}).get("forecast_month_usd")
    budget = (snap.get("targets") or {}).get("monthly_budget_usd")
    return is_num(forecast) and is_num(budget) and forecast > budget


def monthly_cost(snap: dict[str, Any], *, static: bool, now: datetime) -> list[Node]:
    s = snap.get("summary") or {}
    budget = (snap.get("targets") or {}).get("monthly_budget_usd")
    forecast, spent = s.get("forecast_month_usd"), s.get("month_to_date_usd")
    over = over_budget(snap)
    warning = None
    if over and is_num(forecast) and is_num(budget):
        warning = el(
            "p",
            {"class": "stat-note warn"},
            el("span", {"class": "warn-icon", "aria-hidden": "true"}, "▲ "),
            el("strong", {}, f"{fmt_usd(forecast - budget)} over budget"),
        )
    label = f"Month to date: {fmt_usd(spent)} of the {fmt_usd(budget)} budget"
    return stat(
        fmt_usd(spent),
        f"of {fmt_usd(budget)} budget",
        (),
        target_bar(spent, budget, label, over),
        note(f"Forecast {fmt_usd(forecast)} by month end"),
        warning,
        costs_as_of(snap, static, now),
    )


CARDS: dict[str, Callable[..., list[Node]]] = {
    "total-experiments": total_experiments,
    "best-compression": best_compression,
    "best-quality": best_quality,
    "monthly-cost": monthly_cost,
}


def card_body(card_id: str) -> re.Pattern[str]:
    """A card's section up to its `.card-body`, the body's placeholder, and its end."""
    return re.compile(
        rf'(<section id="{card_id}" class="card)("[^>]*>\s*<h2\b[^>]*>.*?</h2>\s*'
        rf'<div class="card-body">)(.*?)(</div>)',
        re.S,
    )


# -- the alert strip, as alerts.js draws it -------------------------------------------------
STATE_WORDS = {
    "firing": "Firing",
    "pending": "Pending",
    "resolved": "Resolved",
    "acknowledged": "Acknowledged",
}


def severity_class(severity: Any) -> str:
    return severity if severity in ("critical", "warning", "info") else "info"


def alert_item(alert: dict[str, Any], now: datetime) -> Node:
    if alert.get("acknowledged"):
        by = alert.get("acknowledged_by")
        ack = el("span", {"class": "alert-ack"}, f"Acknowledged{f' by {by}' if by else ''}")
    else:
        ack = el("span", {"class": "alert-ack alert-unack"}, "Not acknowledged")
    sev = severity_class(alert.get("severity"))
    state = alert.get("state")
    since = parse_time(alert.get("since"))
    iso = iso_ms(since) if since else ""
    ago = (
        el("time", {"datetime": iso, "title": iso, "class": "rel-time"}, fmt_relative(since, now))
        if since
        else missing()
    )
    return el(
        "li",
        {
            "class": f"alert-item alert-{sev} alert-{'firing' if state == 'firing' else 'pending'}",
            "data-rule": str(alert.get("rule")),
            "data-id": js_number(alert["id"]) if is_num(alert.get("id")) else str(alert.get("id")),
        },
        el(
            "span",
            {"class": f"badge badge-sev-{sev}"},
            f"{STATE_WORDS.get(str(state), str(state))} · {alert.get('severity')}",
        ),
        " ",
        el("span", {"class": "alert-summary"}, str(alert.get("summary") or alert.get("rule"))),
        " ",
        el("span", {"class": "alert-meta"}, "since ", ago, " · ", ack),
    )


ALERT_STRIP = re.compile(
    r'(<section id="alert-strip" class="alert-strip)("[^>]*?) data-state="clear" hidden>'
    r'(\s*<h2 id="alert-strip-title">)No alerts firing(</h2>\s*)'
    r'<ul id="alert-list" class="alert-list" hidden></ul>'
)


def draw_alert_strip(page: str, data: dict[str, Any], now: datetime) -> str | None:
    """The strip drawn from the alerts' first answer; None when the page's strip is not the
    one this knows."""
    shown = [
        a
        for a in data.get("alerts") or []
        if isinstance(a, dict) and a.get("state") in ("firing", "pending")
    ]
    firing = [a for a in shown if a.get("state") == "firing"]
    n = len(firing) or len(shown)
    heading = (
        f"{n} alert{'' if n == 1 else 's'} {'firing' if firing else 'pending'}"
        if shown
        else "No alerts firing"
    )
    state = (
        "critical"
        if any(a.get("severity") == "critical" for a in firing)
        else "firing"
        if firing
        else "pending"
        if shown
        else "clear"
    )
    items = "".join(markup(alert_item(a, now)) for a in shown)
    listing = f'<ul id="alert-list" class="alert-list"{"" if shown else " hidden"}>{items}</ul>'

    def draw(m: re.Match[str]) -> str:
        title = m.group(3) + html.escape(heading) + m.group(4)
        return f'{m.group(1)} {DRAWN}{m.group(2)} data-state="{state}">{title}{listing}'

    drawn, found = ALERT_STRIP.subn(draw, page, count=1)
    return drawn if found else None


KPI_GRID = re.compile(r'<div class="grid grid-kpi">')
# The module tags of <head>: the first paint no longer needs them (see MODULES_TEMPLATE).
MODULE_TAGS = re.compile(
    r'(?:<link rel="modulepreload" href="[^"<>]*">\s*)*'
    r'<script type="module" src="[^"<>]*"></script>'
)
MODULES_TEMPLATE = "codecdash-modules"
"""Where the drawn page keeps its module tags: a <template>, inert; theme.js puts them in
the page after the first paint, so that their requests do not compete with it."""


def defers_modules(theme_js: bytes | None) -> bool:
    """Whether this theme.js puts the template's modules in (an older edited copy does not:
    its page keeps its module tags where they are)."""
    return theme_js is not None and MODULES_TEMPLATE.encode() in theme_js


def nothing_above(snap: dict[str, Any]) -> bool:
    """True when the modules would show nothing above the cards but the alert strip."""
    sources = snap.get("sources") or []
    return (
        not snap.get("demo")
        and (snap.get("summary") or {}).get("total_experiments") != 0
        and all(not isinstance(s, dict) or s.get("ok") is not False for s in sources)
    )


def draw_first_screen(
    page: str,
    snap: dict[str, Any],
    *,
    alerts: dict[str, Any] | None,
    static: bool,
    defer_modules: bool = True,
    now: datetime | None = None,
) -> str:
    """index.html (text) with the headline cards drawn from `snap` and shown (see the module
    docstring); unchanged when they cannot be (something due above them, an edited page
    whose cards are not where they were). `alerts`: the strip's first answer (`serve`), else
    None (a static export: no strip). `defer_modules`: the module tags go in the template
    (false for a page whose theme.js would not put them back: `defers_modules`)."""
    if not nothing_above(snap) or (alerts is None and not static):
        return page
    moment = now or datetime.now(UTC)
    if alerts is not None:
        strip = draw_alert_strip(page, alerts, moment)
        if strip is None:  # an edited strip: the modules draw it, and the cards after it
            return page
        page = strip
    drawn = 0
    for card_id, draw in CARDS.items():
        found = card_body(card_id).search(page)
        if found is None:
            continue
        over = card_id == "monthly-cost" and over_budget(snap)
        body = "".join(markup(n) for n in draw(snap, static=static, now=moment))
        head = found.group(1) + (" is-warning" if over else "") + found.group(2)
        page = page[: found.start()] + head + body + found.group(4) + page[found.end() :]
        drawn += 1
    if not drawn:
        return page
    if defer_modules:
        page = MODULE_TAGS.sub(
            lambda m: f'<template id="{MODULES_TEMPLATE}">{m.group(0)}</template>', page, count=1
        )
    return KPI_GRID.sub(f'<div class="grid grid-kpi {DRAWN}">', page, count=1)
