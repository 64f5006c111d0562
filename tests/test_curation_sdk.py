"""The SDK's curation calls against a live server: delete, restore, bulk with a dry run, the
trash, purge, notes and tags, the audit log."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from codecdash.client import Client, ClientError
from conftest import LiveServer


@pytest.fixture
def sdk(live_server: LiveServer) -> Iterator[Client]:
    with Client(live_server.url, live_server.token, backoff=0.01) as client:
        yield client


def test_delete_restore_and_the_trash(sdk: Client) -> None:
    sdk.put_experiment("a", status="failed")
    sdk.put_experiment("b", status="failed")
    sdk.put_experiment("c", status="completed")
    deleted = sdk.delete("a")
    assert deleted["id"] == "a" and deleted["deleted_at"]
    with pytest.raises(ClientError) as caught:
        sdk.get_experiment("a")
    assert caught.value.status == 404
    with pytest.raises(ClientError) as caught:
        sdk.put_experiment("a", status="queued")
    assert caught.value.status == 409 and "restore" in caught.value.message
    assert sdk.trash()["total"] == 1
    assert sdk.restore("a")["status"] == "failed"

    counted = sdk.delete_many(status=["failed"], dry_run=True)
    assert counted["matched"] == 2 and counted["deleted"] == 0
    assert sdk.delete_many(status=["failed"])["deleted"] == 2
    assert sdk.list_experiments()["total"] == 1
    assert sdk.restore_many(["a"])["restored"] == 1
    assert sdk.purge(dry_run=True)["matched"] == 1
    assert sdk.purge(ids=["b"])["purged"] == 1
    assert sdk.trash()["total"] == 0
    actions = [e["action"] for e in sdk.audit()["items"]]
    assert actions == ["purge", "restore", "delete", "restore", "delete"]


def test_notes_and_tags(sdk: Client) -> None:
    with sdk.experiment(name="run", tags=["wip"]) as exp:
        assert exp.note("**bold**, <i>not html</i>")["notes"] == "**bold**, <i>not html</i>"
        assert exp.add_tags("uvg", "mse")["tags"] == ["wip", "uvg", "mse"]
        assert exp.remove_tags("wip")["tags"] == ["uvg", "mse"]
    stored = sdk.get_experiment(exp.id)
    assert stored["status"] == "completed" and stored["tags"] == ["uvg", "mse"]
    assert sdk.note(exp.id, None)["notes"] is None
    edits = sdk.audit(action="edit")["items"]
    assert len(edits) == 4 and all(e["ids"] == [exp.id] for e in edits)
