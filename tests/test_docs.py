"""The docs stay true: every setting, endpoint, error code, metric and command is documented."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from codecdash.api import errors, metrics
from codecdash.api.app import create_app
from codecdash.cli import main
from codecdash.config import Settings

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def all_docs() -> str:
    return "\n".join([read(ROOT / "README.md"), *(read(p) for p in sorted(DOCS.glob("*.md")))])


def table_row(text: str, needle: str) -> str | None:
    return next(
        (line for line in text.splitlines() if line.startswith("|") and needle in line), None
    )


def shown_default(value: object) -> str | None:
    """How a default is written in the docs, or None when it has no single spelling."""
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, int):
        return f"`{value}`"
    if isinstance(value, float):
        return f"`{value:g}`"
    if isinstance(value, str):
        return f"`{value}`"
    return None


@pytest.mark.parametrize("name", list(Settings.model_fields))
def test_every_setting_is_documented(name: str) -> None:
    text = read(DOCS / "configuration.md")
    env = f"CODECDASH_{name.upper()}"
    row = table_row(text, f"`{env}`")
    assert row is not None, f"{env} has no row in docs/configuration.md"
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[0] == f"`{name}`", f"the row of {env} names the TOML key {cells[0]}"
    field = Settings.model_fields[name]
    default = field.default_factory() if field.default_factory else field.default  # type: ignore[call-arg]
    spelled = shown_default(default)
    if spelled is not None:
        assert cells[2] == spelled, f"{name}: default {cells[2]} in the docs, {spelled} in code"
    else:
        assert cells[2] in ("none", "empty"), f"{name}: default {cells[2]}"
    assert len(cells) >= 4 and len(cells[3]) > 10, f"{name}: say what it means"


def test_documented_settings_exist() -> None:
    documented = set(re.findall(r"`CODECDASH_([A-Z0-9_]+)`", read(DOCS / "configuration.md")))
    # CODECDASH_<TABLE>__<KEY>… sets a key inside a table setting: the table must exist
    tables = {name.split("__")[0] for name in documented}
    assert tables - {n.upper() for n in Settings.model_fields} == set()


def operations() -> Iterator[tuple[str, str]]:
    app = create_app(Settings(database_url="sqlite://"), background=False)
    try:
        for path, methods in app.openapi()["paths"].items():
            for method in methods:
                yield method.upper(), path
    finally:
        app.state.codecdash.store.close()


@pytest.mark.parametrize(
    ("method", "path"), [*operations(), ("GET", "/openapi.json"), ("GET", "/")]
)
def test_every_endpoint_is_documented(method: str, path: str) -> None:
    text = read(DOCS / "api.md")
    assert f"`{method} {path}`" in text, f"{method} {path} is missing from docs/api.md"


def test_documented_endpoints_exist() -> None:
    known = {f"{m} {p}" for m, p in operations()} | {"GET /openapi.json", "GET /"}
    table = [line for line in read(DOCS / "api.md").splitlines() if line.startswith("| `")]
    documented = {
        m.group(1)
        for line in table
        if (m := re.match(r"\| `((?:GET|POST|PUT|PATCH|DELETE) /[^`]*)`", line))
    }
    assert documented and documented - known == set()


def error_codes() -> set[str]:
    """Every `code` the API can answer: errors.CODES, errors.PLAIN_ERRORS and the literals
    in api/*.py."""
    codes = set(errors.CODES.values())
    codes |= {code for _status, code in errors.PLAIN_ERRORS.values() if code}
    for path in Path(errors.__file__).parent.glob("*.py"):
        source = path.read_text(encoding="utf-8")
        codes |= set(re.findall(r'"code":\s*"([a-z_]+)"', source))
        codes |= set(re.findall(r'\bcode="([a-z_]+)"', source))
        codes |= set(re.findall(r'_reply\(\s*\w+,\s*\d+,\s*"([a-z_]+)"', source))
    return codes


def test_every_error_code_is_documented() -> None:
    text = read(DOCS / "api.md")
    codes = error_codes()
    assert {"bad_cursor", "bad_host", "too_large", "invalid"} <= codes
    for code in sorted(codes):
        assert f"`{code}`" in text, f"error code {code} is missing from docs/api.md"


def test_every_metric_is_documented() -> None:
    source = Path(metrics.__file__).read_text(encoding="utf-8")
    names = set(re.findall(r'"(codecdash_[a-z_]+)"', source))
    assert len(names) > 10
    text = read(DOCS / "api.md")
    for name in sorted(names):
        assert f"`{name}`" in text, f"metric {name} is missing from docs/api.md"


def commands(group: click.Group, prefix: str = "codecdash") -> Iterator[tuple[str, click.Command]]:
    for name, command in sorted(group.commands.items()):
        path = f"{prefix} {name}"
        if isinstance(command, click.Group):
            yield from commands(command, path)
        else:
            yield path, command


@pytest.mark.parametrize(("path", "command"), list(commands(main)), ids=lambda v: str(v))
def test_every_command_is_documented(path: str, command: click.Command) -> None:
    """`codecdash token list` counts as documented by `codecdash token create/list/revoke`."""
    *parents, last = path.split(" ")
    pattern = re.escape(" ".join(parents)) + r" (?:[\w-]+/)*" + re.escape(last) + r"(?![\w-])"
    assert re.search(pattern, all_docs()), f"`{path}` is in no doc (README.md, docs/*.md)"


@pytest.mark.parametrize(
    "path",
    ["codecdash serve", "codecdash token create", "codecdash token list", "codecdash token revoke"],
)
def test_core_command_options_are_documented(path: str) -> None:
    command = dict(commands(main))[path]
    text = read(DOCS / "configuration.md") + read(DOCS / "api.md")
    for param in command.params:
        for option in param.opts:
            if option.startswith("--") and option != "--help":
                assert option in text, f"{path} {option} is undocumented"
    assert "--config" in read(DOCS / "configuration.md")


# What the repository's own docs may not lean on: a file that is not in the repository.
OUTSIDE = re.compile(
    "|".join(
        [
            r"\bCONTRACT" + r"\.md\b",  # the build's brief, not part of the repository
            r"\.\./shared/",
            r"/work/(?:shared|main|wt|notes)\b",
        ]
    )
)


def repository_text_files() -> Iterator[Path]:
    for top in ("src", "docs", "tests", "bench", "scripts", "infrastructure"):
        for path in sorted((ROOT / top).rglob("*")):
            if path.is_file() and path.suffix in (
                ".py",
                ".md",
                ".js",
                ".html",
                ".css",
                ".yaml",
                ".toml",
                ".txt",
                "",
            ):
                yield path
    yield ROOT / "README.md"
    yield ROOT / "pyproject.toml"


def test_no_doc_or_docstring_points_outside_the_repository() -> None:
    found = []
    for path in repository_text_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert found == [], "references to files outside the repository:\n" + "\n".join(found)


def test_every_relative_link_in_the_docs_resolves() -> None:
    for doc in [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]:
        for target in re.findall(r"\]\(([^)\s#]+)(?:#[^)]*)?\)", read(doc)):
            if re.match(r"[a-z]+:", target):
                continue  # a URL
            resolved = (doc.parent / target).resolve()
            assert resolved.is_relative_to(ROOT), f"{doc.name} links outside: {target}"
            assert resolved.exists(), f"{doc.name} links to a missing file: {target}"
