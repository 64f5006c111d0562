"""Your own copy of the page: `codecdash page eject DIR`, then `serve`/`export`/`deploy`
with `--page-dir DIR` (setting `page_dir`): DIR's files over the installed ones, missing
ones from the installed copy, and a warning when DIR was ejected from another page API."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from codecdash.api.csp import csp_allowing
from codecdash.api.static import dashboard_dir, page_files
from codecdash.cli import main
from codecdash.config import Settings, load_settings
from codecdash.page import MARKER, PAGE_API, inspect
from codecdash.serving import announce_page_dir


def eject(tmp_path: Path) -> Path:
    dest = tmp_path / "mypage"
    result = CliRunner().invoke(main, ["page", "eject", str(dest)])
    assert result.exit_code == 0, result.output
    assert f"codecdash serve --page-dir {dest}" in result.output
    return dest


def test_eject_writes_every_page_file_and_a_marker(tmp_path: Path) -> None:
    dest = eject(tmp_path)
    assert set(page_files(dest)) == set(page_files(dashboard_dir()))
    for name in ("index.html", "styles.css", "app.js", "rd.js", "cards.js"):
        assert (dest / name).read_bytes() == (dashboard_dir() / name).read_bytes()
    marker = json.loads((dest / MARKER).read_text())
    assert marker["page_api"] == PAGE_API
    assert inspect(dest).warning is None
    # A second eject does not overwrite edits unless told to.
    (dest / "styles.css").write_text("/* mine */")
    again = CliRunner().invoke(main, ["page", "eject", str(dest)])
    assert again.exit_code != 0 and "--force" in again.output
    assert (dest / "styles.css").read_text() == "/* mine */"
    forced = CliRunner().invoke(main, ["page", "eject", str(dest), "--force"])
    assert forced.exit_code == 0
    assert (dest / "styles.css").read_bytes() == (dashboard_dir() / "styles.css").read_bytes()


@pytest.mark.anyio
async def test_serve_uses_the_page_dir_and_falls_back_for_missing_files(
    tmp_path: Path, make_app: object
) -> None:
    dest = eject(tmp_path)
    (dest / "styles.css").write_text(":root { --accent: #0f766e; } /* my colours */")
    (dest / "rd.js").unlink()  # not edited: the installed one is served
    settings = load_settings(
        env={"CODECDASH_PAGE_DIR": str(dest)}, database_url=str(tmp_path / "x.db")
    )
    assert settings.page_dir == str(dest)
    app = await make_app(settings)  # type: ignore[operator]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        css = await client.get("/styles.css")
        assert "my colours" in css.text
        rd = await client.get("/rd.js")
        assert rd.status_code == 200
        assert rd.text.startswith((dashboard_dir() / "rd.js").read_text()[:40])
        page = await client.get("/")
        # This edited stylesheet is small: GET / carries it inline, and its CSP allows it by
        # the hash of the edited text (and theme.js by the hash of the installed one).
        edited = (dest / "styles.css").read_bytes()
        assert b"<style>" + edited + b"</style>" in page.content
        assert "./styles.css?v=" not in page.text
        policy = page.headers["content-security-policy"]
        theme = (dashboard_dir() / "theme.js").read_bytes()
        assert policy == csp_allowing(scripts=[theme], styles=[edited])
        assert "'unsafe-inline'" not in policy


def test_an_older_or_foreign_copy_is_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dest = eject(tmp_path)
    (dest / MARKER).write_text(json.dumps({"codecdash": "0.0.1", "page_api": PAGE_API - 1}))
    warning = inspect(dest).warning
    assert warning and "0.0.1" in warning and f"page API {PAGE_API - 1}" in warning
    with caplog.at_level(logging.INFO, logger="codecdash"):
        announce_page_dir(str(dest))
    assert any(r.levelno == logging.WARNING and "0.0.1" in r.message for r in caplog.records)
    assert any("page files from" in r.message for r in caplog.records)
    (dest / MARKER).unlink()
    assert "not made by `codecdash page eject`" in (inspect(dest).warning or "")
    # doctor says so too.
    result = CliRunner().invoke(
        main,
        ["doctor"],
        env={"CODECDASH_PAGE_DIR": str(dest), "CODECDASH_DATABASE_URL": str(tmp_path / "d.db")},
    )
    assert "! page directory" in result.output and "not made by" in result.output
    missing = CliRunner().invoke(
        main,
        [
            "export",
            "--out",
            str(tmp_path / "o"),
            "--page-dir",
            str(tmp_path / "nope"),
            "--db",
            str(tmp_path / "d.db"),
        ],
    )
    assert missing.exit_code != 0 and "does not exist" in missing.output


def test_export_uses_the_page_dir(tmp_path: Path) -> None:
    dest = eject(tmp_path)
    (dest / "styles.css").write_text("/* exported colours */")
    out = tmp_path / "site"
    result = CliRunner().invoke(
        main,
        ["export", "--out", str(out), "--page-dir", str(dest), "--db", str(tmp_path / "e.db")],
    )
    assert result.exit_code == 0, result.output
    assert (out / "styles.css").read_text() == "/* exported colours */"
    assert (out / "app.js").is_file()


def test_deploy_uploads_the_page_dir(tmp_path: Path) -> None:
    from codecdash.export import site_files

    dest = eject(tmp_path)
    (dest / "styles.css").write_text("/* deployed colours */")
    files = {f.name: f.body for f in site_files("", page_dir=dest)}
    assert files["styles.css"] == b"/* deployed colours */"
    assert "--page-dir" in CliRunner().invoke(main, ["deploy", "--help"]).output
    settings = Settings(database_url="x.db", page_dir=str(dest))
    assert settings.page_dir == str(dest)


@pytest.mark.anyio
async def test_an_older_theme_js_keeps_its_modules_where_they_are(
    tmp_path: Path, make_app: object
) -> None:
    """A copy whose theme.js predates the drawn first screen would never put in modules kept
    in a template: its page keeps the module tags in <head> (the cards are drawn all the same)."""
    dest = eject(tmp_path)
    (dest / "theme.js").write_text("// an older theme.js\n")
    settings = load_settings(
        env={"CODECDASH_PAGE_DIR": str(dest)}, database_url=str(tmp_path / "x.db")
    )
    app = await make_app(settings)  # type: ignore[operator]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        token = app.state.codecdash.store.create_token("w")  # type: ignore[attr-defined]
        auth = {"Authorization": f"Bearer {token}"}
        r = await client.post("/api/v1/experiments", json={"id": "e1"}, headers=auth)
        assert r.status_code == 201
        page = (await client.get("/")).text
    assert '<div class="grid grid-kpi is-drawn">' in page
    assert "codecdash-modules" not in page
    assert '<script type="module" src="./app.js?v=' in page
