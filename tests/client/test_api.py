"""The SDK's HTTP calls against a real server: answers as documented, errors as ``ApiError``."""

from __future__ import annotations

import uuid

import pytest
from harness import ServerProcess, free_port

from vidsync.client import ApiError, Client, ServerUnreachable

pytestmark = pytest.mark.asyncio


async def test_accounts_projects_invites_members(server: ServerProcess) -> None:
    email = f"sdk-{uuid.uuid4().hex[:8]}@example.com"
    async with Client(server.url) as owner, Client(server.url) as viewer:
        out = await owner.register(email, "correct horse 1", "Owner")
        assert owner.token == out["token"] and (await owner.me())["email"] == email
        project = await owner.create_project("film", "rushes")
        pid = project["id"]
        assert (await owner.update_project(pid, name="film 2"))["name"] == "film 2"
        invite = await owner.create_invite(pid, expires_in_s=600, max_uses=2)
        assert [i["code"] for i in await owner.invites(pid)] == [invite["code"]]
        await viewer.register(f"v-{email}", "correct horse 1")
        joined = await viewer.join(invite["code"])
        assert joined["role"] == "viewer" and joined["project"]["id"] == pid
        detail = await viewer.project(pid)
        assert {m["role"] for m in detail["members"]} == {"owner", "viewer"}
        assert [p["id"] for p in await viewer.projects()] == [pid]
        await owner.revoke_invite(pid, invite["code"])
        assert await owner.invites(pid) == []
        viewer_id = (await viewer.me())["id"]
        await owner.remove_member(pid, viewer_id)
        with pytest.raises(ApiError) as e:
            await viewer.project(pid)
        assert (e.value.status, e.value.code) == (404, "not_found")
        await owner.logout()
        assert owner.token is None
        token = (await owner.login(email, "correct horse 1"))["token"]
        assert owner.token == token
        await owner.delete_project(pid)
        assert await owner.projects() == []


async def test_log_calls(server: ServerProcess, tmp_path) -> None:
    async with Client(server.url) as c:
        await c.register(f"log-{uuid.uuid4().hex[:8]}@example.com", "correct horse 1")
        pid = (await c.create_project("log"))["id"]
        path = tmp_path / "a.bin"
        path.write_bytes(b"hello")
        up = await c.upload_file(pid, path)
        changes = [{"path": "clips/a.mov", "op": "create", "hash": up.hash, "size": up.size},
                   {"path": "audio/b.wav", "op": "create", "hash": up.hash, "size": up.size}]
        first = await c.post_changes(pid, changes, idempotency_key="batch-1")
        again = await c.post_changes(pid, changes, idempotency_key="batch-1")
        assert first == again and first["last_seq"] == 2
        page = await c.events(pid, since_seq=0, limit=1)
        assert [e["seq"] for e in page["events"]] == [1] and page["has_more"]
        page = await c.events(pid, since_seq=0, paths=["audio/"])
        assert [e["change"]["path"] for e in page["events"]] == ["audio/b.wav"]
        waited = await c.events(pid, since_seq=2, wait=1)
        assert waited["events"] == [] and waited["last_seq"] == 2
        listing = await c.files(pid, paths=["clips"])
        assert [f["path"] for f in listing["files"]] == ["clips/a.mov"]
        with pytest.raises(ApiError) as e:
            await c.post_changes(pid, [{**changes[0], "hash": "0" * 64}])
        assert (e.value.status, e.value.code, e.value.details["index"]) == (409, "content_missing", 0)
        manifest = await c.manifest(pid, up.hash)
        assert (manifest.hash, manifest.size) == (up.hash, 5)
        assert b"".join([x async for x in c.content(pid, up.hash, 1, 4)]) == b"ell"
        assert await c.get_block(pid, manifest.blocks[0].hash, 4) == b"o"
        link = await c.download_link(pid, prefix="clips")
        assert link["url"].startswith(server.url + "/api/download/")


async def test_editor_roles_and_conflicts(server: ServerProcess, tmp_path) -> None:
    tag = uuid.uuid4().hex[:8]
    async with Client(server.url) as owner, Client(server.url) as editor:
        await owner.register(f"o-{tag}@example.com", "correct horse 1", "Owner")
        editor_user = (await editor.register(f"e-{tag}@example.com", "correct horse 1", "Ana"))
        pid = (await owner.create_project("roles"))["id"]
        invite = await owner.create_invite(pid, role="editor")
        assert invite["role"] == "editor"
        assert (await editor.join(invite["code"]))["role"] == "editor"
        (tmp_path / "a").write_bytes(b"one")
        (tmp_path / "b").write_bytes(b"two")
        one = await editor.upload_file(pid, tmp_path / "a")
        two = await owner.upload_file(pid, tmp_path / "b")
        await editor.post_changes(pid, [{"path": "cut.prproj", "op": "create", "hash": one.hash,
                                         "size": one.size, "base": None}])
        with pytest.raises(ApiError) as e:
            await owner.post_changes(pid, [{"path": "cut.prproj", "op": "create",
                                            "hash": two.hash, "size": two.size, "base": None}])
        assert (e.value.status, e.value.code) == (409, "conflict")
        assert e.value.details["conflicts"] == [{"index": 0, "path": "cut.prproj", "current": {
            "hash": one.hash, "seq": 1, "author": {"id": editor_user["user"]["id"], "name": "Ana"}}}]
        member = await owner.set_member_role(pid, editor_user["user"]["id"], "viewer")
        assert member["role"] == "viewer"
        with pytest.raises(ApiError) as e:
            await editor.post_changes(pid, [{"path": "x", "op": "delete"}])
        assert (e.value.status, e.value.code) == (403, "forbidden")


async def test_errors_are_typed(server: ServerProcess) -> None:
    async with Client(server.url, token="not a token") as c:
        with pytest.raises(ApiError) as e:
            await c.me()
        assert (e.value.status, e.value.code) == (401, "unauthorized") and e.value.message
    async with Client(f"http://127.0.0.1:{free_port()}") as c:
        with pytest.raises(ServerUnreachable):
            await c.me()
