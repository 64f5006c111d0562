"""Curation from the details dialog in real Chromium (dashboard/curate.js): nothing for public
viewers; with a write token (entered after `?curate`), rename, tags, the note, delete and
restore, each with an Undo; notes always shown as text, never as HTML."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from browser.conftest import Dashboard, page_problems, wait_for_data

DIALOG = "#experiment-details"


def open_details(dashboard: Dashboard, page: Page, exp_id: str, curate: bool = False) -> None:
    page.goto(dashboard.url + f"?exp={exp_id}" + ("&curate" if curate else ""))
    expect(page.locator(DIALOG)).to_be_visible()
    expect(page.locator(f"{DIALOG} .exp-id")).to_have_text(exp_id)


def enter_token(dashboard: Dashboard, page: Page) -> None:
    page.fill("#curate-token", dashboard.live.token)
    page.click(f"{DIALOG} form.curate-token button[type=submit]")
    expect(page.locator("#curate-delete")).to_be_visible()


def stored(dashboard: Dashboard, exp_id: str) -> dict[str, object]:
    response = dashboard.api.get(f"/api/v1/experiments/{exp_id}")
    assert response.status_code == 200, response.text
    result: dict[str, object] = response.json()
    return result


def test_public_viewers_see_no_curation_and_notes_as_text(dashboard: Dashboard, page: Page) -> None:
    note = "# Title\n<img src=x onerror=alert(1)> **bold**"
    dashboard.api.patch("/api/v1/experiments/exp-027", json={"notes": note}).raise_for_status()
    open_details(dashboard, page, "exp-027")
    dialog = page.locator(DIALOG)
    expect(dialog.locator(".notes-box")).to_have_text(note)
    assert dialog.locator(".notes-box img").count() == 0  # shown as text, never parsed
    expect(dialog.locator(".curate")).to_have_count(0)
    expect(dialog.locator("button", has_text="Delete")).to_have_count(0)


def test_a_wrong_write_token_is_refused_and_forgotten(dashboard: Dashboard, page: Page) -> None:
    page_problems(page).allow(r"status of 401")
    open_details(dashboard, page, "exp-027", curate=True)
    page.fill("#curate-token", "cdt_not-a-real-token")
    page.click(f"{DIALOG} form.curate-token button[type=submit]")
    expect(page.locator(f"{DIALOG} .curate-error")).to_contain_text("write token was refused")
    assert page.evaluate("sessionStorage.getItem('codecdash-write-token')") is None
    expect(page.locator("#curate-delete")).to_have_count(0)


def test_rename_with_undo(dashboard: Dashboard, page: Page) -> None:
    open_details(dashboard, page, "exp-027", curate=True)
    enter_token(dashboard, page)
    before = stored(dashboard, "exp-027")["name"]
    page.fill("#curate-name", "renamed <b>run</b>")
    page.click(f"{DIALOG} form.curate-row button:has-text('Rename')")
    expect(page.locator("#details-title")).to_have_text("renamed <b>run</b>")
    assert stored(dashboard, "exp-027")["name"] == "renamed <b>run</b>"
    # the table follows (the event stream)
    expect(page.locator('tr[data-id="exp-027"]')).to_contain_text("renamed <b>run</b>")
    page.click("#curate-toast button:has-text('Undo')")
    expect(page.locator("#details-title")).to_have_text(str(before))
    assert stored(dashboard, "exp-027")["name"] == before
    # the token stays with the tab: a reload keeps the controls, without ?curate
    page.goto(dashboard.url + "?exp=exp-027")
    expect(page.locator("#curate-delete")).to_be_visible()


def test_tags_add_and_remove_with_undo(dashboard: Dashboard, page: Page) -> None:
    open_details(dashboard, page, "exp-026", curate=True)
    enter_token(dashboard, page)
    tags = page.locator(f"{DIALOG} .curate-tags li")
    expect(tags).to_have_text([re.compile("^uvg"), re.compile("^ms-ssim")])
    page.fill("#curate-tag", "baseline")
    page.click(f"{DIALOG} button:has-text('Add tag')")
    expect(tags).to_have_count(3)
    assert stored(dashboard, "exp-026")["tags"] == ["uvg", "ms-ssim", "baseline"]
    page.click(f"{DIALOG} button[aria-label='Remove tag uvg']")
    expect(tags).to_have_count(2)
    assert stored(dashboard, "exp-026")["tags"] == ["ms-ssim", "baseline"]
    page.click("#curate-toast button:has-text('Undo')")
    expect(tags).to_have_count(3)
    assert stored(dashboard, "exp-026")["tags"] == ["uvg", "ms-ssim", "baseline"]


def test_note_with_undo(dashboard: Dashboard, page: Page) -> None:
    open_details(dashboard, page, "exp-027", curate=True)
    enter_token(dashboard, page)
    text = "Diverged after <script>warm-up</script>\n- see r5"
    page.fill("#curate-note", text)
    page.click(f"{DIALOG} button:has-text('Save note')")
    expect(page.locator(f"{DIALOG} .notes-box")).to_have_text(text)
    assert stored(dashboard, "exp-027")["notes"] == text
    page.click("#curate-toast button:has-text('Undo')")
    expect(page.locator(f"{DIALOG} .notes-box")).to_have_count(0)
    assert stored(dashboard, "exp-027")["notes"] is None


def test_delete_with_undo_then_restore(dashboard: Dashboard, page: Page) -> None:
    open_details(dashboard, page, "exp-027", curate=True)
    wait_for_data(page)
    enter_token(dashboard, page)
    page.click("#curate-delete")
    expect(page.locator("#curate-trashed")).to_contain_text("In the trash since")
    expect(page.locator('tr[data-id="exp-027"]')).to_have_count(0)  # gone from the table
    assert dashboard.api.get("/api/v1/experiments/exp-027").status_code == 404
    page.click("#curate-toast button:has-text('Undo')")
    expect(page.locator("#curate-delete")).to_be_visible()
    expect(page.locator('tr[data-id="exp-027"]')).to_have_count(1)
    assert stored(dashboard, "exp-027")["psnr_db"] == 35.05

    # delete again, then restore with the dialog's own button
    page.click("#curate-delete")
    page.click("#curate-restore")
    expect(page.locator("#curate-delete")).to_be_visible()
    expect(page.locator('tr[data-id="exp-027"]')).to_have_count(1)
    actions = [e["action"] for e in dashboard.api.get("/api/v1/audit").json()["items"]]
    assert actions == ["restore", "delete", "restore", "delete"]
