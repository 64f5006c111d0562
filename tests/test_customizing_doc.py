"""docs/customizing.md stays true: the CSS custom properties, JS functions, section ids and
files it names exist where it says, and its worked example ("Failed Experiments"), pasted
into a copy of the page as the doc says, renders the card in Chromium."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from codecdash.api.static import dashboard_dir

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "customizing.md").read_text(encoding="utf-8")
DASHBOARD = dashboard_dir()
CHROMIUM = os.environ.get("CODECDASH_CHROMIUM", "/usr/bin/chromium")


def source(name: str) -> str:
    return (DASHBOARD / name).read_text(encoding="utf-8")


def backticked(text: str) -> list[str]:
    return re.findall(r"`([^`\n]+)`", text)


def defines(js: str, name: str) -> bool:
    """A function, constant or object property named `name` is defined in `js`."""
    escaped = re.escape(name)
    return bool(
        re.search(rf"\b(?:function\*?|const|let|var|class)\s+{escaped}\b", js)
        or re.search(rf"^\s*(?:async\s+)?{escaped}\s*(?::|\()", js, re.MULTILINE)
    )


def section(title: str) -> str:
    """The doc's text under the `## title` heading, up to the next `## `."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", DOC, re.MULTILINE | re.DOTALL)
    assert match, f"docs/customizing.md has no section '## {title}'"
    return match.group(1)


def code_blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^ *```{lang}\n(.*?)^ *```", text, re.MULTILINE | re.DOTALL)


# -- CSS custom properties -------------------------------------------------------------------
def css_block(css: str, selector: str) -> dict[str, str]:
    """The custom properties declared in every `selector { … }` block of `css`, in order."""
    found: dict[str, str] = {}
    for match in re.finditer(rf"(?m)^\s*{re.escape(selector)} \{{", css):
        body = css[match.end() : css.index("}", match.end())]
        found |= dict(re.findall(r"(--[a-z0-9-]+)\s*:\s*([^;]+);", body))
    assert found, f"styles.css has no {selector} block"
    return found


CSS = source("styles.css")
LIGHT = css_block(CSS, ":root")
DARK = css_block(CSS, ':root[data-theme="dark"]')
# Inside @media (prefers-color-scheme: dark) only, however many such blocks there are.
DARK_SYSTEM = css_block(
    "\n".join(CSS[m.end() :] for m in re.finditer(r"@media \(prefers-color-scheme: dark\)", CSS)),
    ':root:not([data-theme="light"])',
)


def command_line_options() -> set[str]:
    """Every `--option` of every codecdash command (the doc names some; they are not CSS)."""
    import click

    from codecdash.cli import main

    found: set[str] = set()
    todo: list[click.Command] = [main]
    while todo:
        command = todo.pop()
        found |= {o for p in command.params for o in p.opts if o.startswith("--")}
        if isinstance(command, click.Group):
            todo += command.commands.values()
    return found


def documented_properties() -> set[str]:
    names = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9]*(?:-[a-z0-9]+)*", DOC))
    names -= command_line_options()
    # "`--good`, `--warn`, … (and each `-soft` background)"
    row = next(line for line in DOC.splitlines() if "`-soft`" in line)
    names |= {f"{n}-soft" for n in re.findall(r"`(--[a-z]+)`", row)}
    return names


def test_every_css_custom_property_named_exists_in_both_themes() -> None:
    names = documented_properties()
    assert {"--accent", "--chart-line", "--bad", "--cost-other", "--good-soft"} <= names
    for theme, block in (("light", LIGHT), ("dark", DARK), ("dark (system)", DARK_SYSTEM)):
        missing = sorted(names - block.keys())
        assert not missing, f"styles.css's {theme} theme lacks {missing}"


def test_the_two_dark_blocks_hold_the_same_values() -> None:
    # The doc: "They hold the same values: change both."
    assert DARK == DARK_SYSTEM


def test_the_theme_storage_key_and_toggle_are_as_documented() -> None:
    assert "`codecdash-theme`" in DOC and "`#theme-toggle`" in DOC
    assert '"codecdash-theme"' in source("theme.js")
    assert 'id="theme-toggle"' in source("index.html")


# -- JS names -----------------------------------------------------------------------------------
def file_table() -> dict[str, list[str]]:
    """The table of files: `file` → the identifiers its row names."""
    rows: dict[str, list[str]] = {}
    for line in DOC.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and re.fullmatch(r"`[^`]+`", cells[0]):
            rows[cells[0].strip("`")] = [
                name.removesuffix("()")
                for name in backticked(cells[1])
                if re.fullmatch(r"[A-Za-z_$][\w$]*(?:\(\))?", name)
            ]
    return rows


def test_every_file_in_the_table_exists_and_defines_what_its_row_names() -> None:
    table = file_table()
    assert {"index.html", "styles.css", "app.js", "format.js", "dom.js", "vendor/"} <= set(table)
    assert {"formatUsd", "formatDuration"} <= set(table["format.js"])
    assert {"h", "renderInto", "setChildren"} <= set(table["dom.js"])
    for name, identifiers in table.items():
        path = DASHBOARD / name
        assert path.exists(), f"docs/customizing.md names {name}, which is not in the page"
        if name.endswith(".js"):
            js = source(name)
            for ident in identifiers:
                assert defines(js, ident), f"{name} does not define {ident}"


def sentences() -> list[str]:
    prose = re.sub(r"```.*?```", "", DOC, flags=re.DOTALL)
    return [s for s in re.split(r"(?<=[.:;])\s+(?=[A-Z`(])|\n\s*\n|\n\s*[-|]", prose) if s]


def test_every_js_name_in_the_prose_exists_where_it_says() -> None:
    """A sentence that names one `x.js` file: its identifiers are defined in that file. Any
    other `call()` or `CONSTANT` the doc names is defined in one of the page's modules."""
    modules = {p.name: p.read_text(encoding="utf-8") for p in DASHBOARD.glob("*.js")}
    checked: list[tuple[str, str]] = []
    for sentence in sentences():
        ticks = backticked(sentence)
        files = {t for t in ticks if re.fullmatch(r"[a-z]+\.js", t)}
        for tick in ticks:
            call = re.fullmatch(r"([A-Za-z_$][\w$]*)\(.*\)", tick)
            ident = call.group(1) if call else tick
            if not re.fullmatch(r"[A-Za-z_$][\w$]*", ident) or ident.endswith("js"):
                continue
            if len(files) == 1 and (call or re.fullmatch(r"[A-Z_]+|[a-z]+[A-Z]\w*", ident)):
                (file,) = files
                assert defines(modules[file], ident), f"{file} does not define {ident}: {sentence}"
                checked.append((file, ident))
            elif ident.startswith("CODECDASH_"):
                continue  # an environment variable, not a name in the page
            elif call or re.fullmatch(r"[A-Z][A-Z0-9_]+", ident):
                if ident in ("h",) or any(defines(js, ident) for js in modules.values()):
                    checked.append(("*", ident))
                    continue
                raise AssertionError(f"no module defines {ident}: {sentence}")
    names = {ident for _, ident in checked}
    assert {"CARD_RENDERERS", "CHARTS", "renderStat", "renderProgressChart", "render"} <= names
    assert ("charts.js", "UPLOT_SRC") in checked and ("charts.js", "UPLOT_CSS") in checked
    assert ("format.js", "formatBytes") in checked


def test_vendored_uplot_is_the_version_the_doc_names() -> None:
    version = re.search(r"`uPlot-(\d+\.\d+\.\d+)\.\*`", DOC)
    assert version, "the doc names no uPlot version"
    v = version.group(1)
    for suffix in (".iife.min.js", ".min.css", ".LICENSE"):
        assert (DASHBOARD / "vendor" / f"uPlot-{v}{suffix}").exists(), suffix
    charts = source("charts.js")
    assert f'"./vendor/uPlot-{v}.iife.min.js"' in charts
    assert f'"./vendor/uPlot-{v}.min.css"' in charts


def test_section_ids_meta_tags_and_chart_skeleton_exist() -> None:
    html = source("index.html")
    text = section("Sections (`index.html`)")
    ids = re.findall(r"`([a-z]+(?:-[a-z]+)*)`", text.split("- **Reorder**")[0])
    assert len(ids) >= 12, ids
    for id_ in ids:
        assert re.search(rf'<section id="{id_}" class="card', html), id_
    for grid in ("grid-kpi", "grid-infra", "grid-charts"):
        assert f'class="grid {grid}"' in html
    for meta in ("codecdash-api-base", "codecdash-snapshot-url"):
        assert f'`<meta name="{meta}"' in DOC and f'<meta name="{meta}"' in html
    # The three elements renderProgressChart() fills, in each progress chart section.
    for id_ in ("compression-progress", "quality-progress"):
        block = html[html.index(f'<section id="{id_}"') :]
        block = block[: block.index("</section>")]
        for part in ('class="chart-summary"', 'class="chart" role="img"', 'class="chart-table"'):
            assert part in block, (id_, part)


def test_the_chart_spec_keys_are_the_ones_charts_js_reads() -> None:
    example = code_blocks(section("Add a chart"), "js")[0]
    keys = set(re.findall(r"^\s*([a-z]+):", example, re.MULTILINE))
    assert {"id", "title", "empty", "series", "points", "field", "target", "format"} <= keys
    charts = source("charts.js")
    for key in keys:
        assert f"spec.{key}" in charts or f"chart.{key}" in charts or key == "id", key


# -- the worked example, in Chromium -----------------------------------------------------------
def worked_example_page(tmp_path: Path) -> Path:
    """A copy of the page with the worked example's three snippets put where the doc says."""
    text = section("Add a metric card: worked example")
    (html,) = code_blocks(text, "html")
    (js,) = code_blocks(text, "js")
    (css,) = code_blocks(text, "css")
    copy = tmp_path / "dashboard"
    shutil.copytree(DASHBOARD, copy)

    index = (copy / "index.html").read_text(encoding="utf-8")
    grid = '<div class="grid grid-kpi">\n'
    assert index.count(grid) == 1
    (copy / "index.html").write_text(index.replace(grid, grid + html), encoding="utf-8")

    # The renderer: what the snippet puts between "…the existing cards…" and the closing "};".
    lines = js.splitlines()
    start = next(i for i, line in enumerate(lines) if "the existing cards" in line) + 1
    end = max(i for i, line in enumerate(lines) if line.strip() == "};")
    entry = "\n".join(lines[start:end]) + "\n"
    assert '"failed-experiments"' in entry
    app = (copy / "cards.js").read_text(encoding="utf-8")
    opening = "export const CARD_RENDERERS = {\n"
    assert app.count(opening) == 1
    (copy / "cards.js").write_text(app.replace(opening, opening + entry), encoding="utf-8")

    styles = copy / "styles.css"
    styles.write_text(styles.read_text(encoding="utf-8") + "\n" + css, encoding="utf-8")
    return copy


@pytest.mark.browser
def test_the_worked_example_renders_the_card(
    make_live_server: Callable[..., object], tmp_path: Path
) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium is not installed at {CHROMIUM}")
    from playwright.sync_api import expect, sync_playwright

    live = make_live_server(static_root=worked_example_page(tmp_path))
    url: str = live.url  # type: ignore[attr-defined]
    items = [
        {"id": f"e{i}", "status": status, "name": f"run {i}"}
        for i, status in enumerate(["completed"] * 3 + ["failed"] * 2 + ["running"])
    ]
    response = httpx.post(
        f"{url}/api/v1/experiments/batch",
        json={"items": items},
        headers={"Authorization": f"Bearer {live.token}"},  # type: ignore[attr-defined]
    )
    assert response.status_code == 200, response.text

    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(5000)
            page.on(
                "console",
                lambda m: problems.append(m.text) if m.type in ("error", "warning") else None,
            )
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(url + "/")
            card = page.locator("#failed-experiments")
            expect(card.locator("h2")).to_have_text("Failed Experiments", timeout=5000)
            expect(card.locator(".stat-value")).to_have_text("2", timeout=5000)
            expect(card.locator(".stat-unit")).to_have_text("failed")
            expect(card.locator(".fact")).to_have_text(["Success rate60.0 %"])
            # Step 3's colour: --bad of the light theme.
            colour = card.locator(".stat-value").evaluate("e => getComputedStyle(e).color")
            bad = LIGHT["--bad"].lstrip("#")
            assert colour == "rgb({}, {}, {})".format(*(int(bad[i : i + 2], 16) for i in (0, 2, 4)))
            # It is the first card of the grid, beside the others.
            expect(page.locator(".grid-kpi > section").first).to_have_id("failed-experiments")
            expect(page.locator("#total-experiments .stat-value")).to_have_text("6")
        finally:
            browser.close()
    assert problems == []


def test_the_file_table_lists_every_page_file() -> None:
    """Every file of the page (a folder's files as its `folder/` row) has a row."""
    table = set(file_table())
    files = {
        p.relative_to(DASHBOARD).as_posix()
        for p in DASHBOARD.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    }
    rows = {name if "/" not in name else name.split("/")[0] + "/" for name in files}
    assert rows - table == set(), f"docs/customizing.md's table lacks {sorted(rows - table)}"
