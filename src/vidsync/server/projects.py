"""Projects, members and invites, and who may do what.

Three roles: the owner (one per project) does everything; an editor posts changes and uploads
content like the owner but cannot invite, remove members, rename or delete the project; a viewer
reads. An invite grants ``viewer`` (the default) or ``editor``; the owner changes a member's role
with ``PATCH members/:user_id``, which takes effect at once on every node.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta

from aiohttp import web

from vidsync.errors import ApiError, bad_request, conflict, not_found
from vidsync.jsonint import json_int
from vidsync.server.content import CONTENT
from vidsync.server.http import (
    SPACE,
    current_user,
    json_response,
    read_json,
    require_role,
    services,
)
from vidsync.server.locks import release_member_locks
from vidsync.store import InviteError
from vidsync.store.base import MEMBER_ROLES, may_write, utcnow

MAX_NAME = 200
MAX_DESCRIPTION = 5000
DEFAULT_INVITE_TTL_S = 7 * 24 * 3600
MAX_INVITE_TTL_S = 365 * 24 * 3600
MAX_INVITE_USES = 100_000
INVITE_ERRORS = {
    "unknown": (404, "invite_not_found", "no such invite code"),
    "expired": (410, "invite_expired", "this invite has expired"),
    "revoked": (410, "invite_revoked", "this invite was revoked"),
    "used_up": (410, "invite_used_up", "this invite has been used the allowed number of times"),
}


def new_invite_code() -> str:
    """144 random bits, URL-safe, never starting with '-' (a command line would take it for an
    option: ``vidsync join CODE DIR``)."""
    while (code := secrets.token_urlsafe(18)).startswith("-"):
        pass
    return code


def _text_field(body: dict, name: str, limit: int, blank_ok: bool) -> str | None:
    """The trimmed string ``body[name]``, None when the field is left out; null, another type,
    an over-long or (unless ``blank_ok``) a blank string is a 400 ``invalid_<name>``."""
    if name not in body:
        return None
    value = body[name]
    if not isinstance(value, str) or (not blank_ok and not value.strip(SPACE)) \
            or len(value) > limit:
        raise bad_request(f"'{name}' must be a string of at most {limit} characters"
                          if blank_ok else f"'{name}' must be a non-empty string of at most "
                          f"{limit} characters", code=f"invalid_{name}")
    return value.strip(SPACE)


async def _object_body(request: web.Request) -> dict:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise bad_request("body must be a JSON object", code="invalid_body")
    return body


async def create_project(request: web.Request) -> web.Response:
    user = await current_user(request)
    body = await _object_body(request)
    name = _text_field(body, "name", MAX_NAME, blank_ok=False)
    if name is None:
        raise bad_request("'name' is required", code="invalid_name")
    description = _text_field(body, "description", MAX_DESCRIPTION, blank_ok=True) or ""
    project = await services(request).store.create_project(
        str(uuid.uuid4()), user.id, name, description, utcnow())
    return json_response({"project": project.to_json()}, status=201)


async def list_projects(request: web.Request) -> web.Response:
    user = await current_user(request)
    rows = await services(request).store.projects_for_user(user.id)
    return json_response({"projects": [
        {**p.to_json(), "role": role, "member_count": count} for p, role, count in rows]})


async def get_project(request: web.Request) -> web.Response:
    project_id = request.match_info["project_id"]
    _, role = await require_role(request, project_id)
    store = services(request).store
    project = await store.get_project(project_id)
    if project is None:
        raise not_found("no such project")
    members = await store.members(project_id)
    content = request.app[CONTENT]
    usage = {**(await content.usage(project_id)).to_json(),
             "quota_bytes": content.config.project_quota,
             "retention_s": content.config.retention_s}
    return json_response({"project": project.to_json(), "role": role,
                          "members": [m.to_json() for m in members], "usage": usage})


async def update_project(request: web.Request) -> web.Response:
    project_id = request.match_info["project_id"]
    await require_role(request, project_id, owner=True)
    body = await _object_body(request)
    name = _text_field(body, "name", MAX_NAME, blank_ok=False)
    description = _text_field(body, "description", MAX_DESCRIPTION, blank_ok=True)
    project = await services(request).store.update_project(project_id, name, description)
    if project is None:
        raise not_found("no such project")
    return json_response({"project": project.to_json()})


async def delete_project(request: web.Request) -> web.Response:
    project_id = request.match_info["project_id"]
    await require_role(request, project_id, owner=True)
    svc = services(request)
    await svc.store.delete_project(project_id)
    svc.end_subscriptions(project_id, "project deleted")
    for hook in svc.on_project_deleted:
        await hook(project_id)
    return web.Response(status=204)


async def create_invite(request: web.Request) -> web.Response:
    project_id = request.match_info["project_id"]
    user, _ = await require_role(request, project_id, owner=True)
    body = await _object_body(request) if request.can_read_body else {}
    ttl = json_int(body.get("expires_in_s", DEFAULT_INVITE_TTL_S))
    raw_max_uses = body.get("max_uses")
    max_uses = json_int(raw_max_uses)
    if ttl is None or not 60 <= ttl <= MAX_INVITE_TTL_S:
        raise bad_request(f"'expires_in_s' must be an integer from 60 to {MAX_INVITE_TTL_S}",
                          code="invalid_expires_in_s")
    if raw_max_uses is not None and (max_uses is None or not 1 <= max_uses <= MAX_INVITE_USES):
        raise bad_request(f"'max_uses' must be an integer from 1 to {MAX_INVITE_USES}",
                          code="invalid_max_uses")
    role = _role_field(body, default="viewer")
    now = utcnow()
    invite = await services(request).store.create_invite(
        new_invite_code(), project_id, user.id, now, now + timedelta(seconds=ttl), max_uses, role)
    return json_response({"invite": invite.to_json()}, status=201)


async def list_invites(request: web.Request) -> web.Response:
    project_id = request.match_info["project_id"]
    await require_role(request, project_id, owner=True)
    invites = await services(request).store.invites(project_id, utcnow())
    return json_response({"invites": [i.to_json() for i in invites]})


async def revoke_invite(request: web.Request) -> web.Response:
    project_id = request.match_info["project_id"]
    await require_role(request, project_id, owner=True)
    if not await services(request).store.revoke_invite(project_id, request.match_info["code"]):
        raise not_found("no such active invite in this project")
    return web.Response(status=204)


async def join(request: web.Request) -> web.Response:
    user = await current_user(request)
    body = await _object_body(request)
    code = body.get("invite_code")
    if not isinstance(code, str) or not code.strip(SPACE) or len(code) > 200:
        raise bad_request("'invite_code' is required", code="invalid_invite_code")
    code = code.strip(SPACE).rstrip("/").rsplit("/", 1)[-1]  # accept a whole invite link too
    try:
        project, role = await services(request).store.redeem_invite(code, user.id, utcnow())
    except InviteError as e:
        status, err_code, message = INVITE_ERRORS[e.reason]
        raise ApiError(status, err_code, message) from None
    return json_response({"project": project.to_json(), "role": role})


def _role_field(body: dict, default: str | None = None) -> str:
    role = body.get("role", default)
    if role not in MEMBER_ROLES:
        raise bad_request(f"'role' must be one of {', '.join(MEMBER_ROLES)}", code="invalid_role")
    return role


async def set_member_role(request: web.Request) -> web.Response:
    project_id = request.match_info["project_id"]
    owner, _ = await require_role(request, project_id, owner=True)
    member_id = request.match_info["user_id"]
    role = _role_field(await _object_body(request))
    if member_id == owner.id:
        raise conflict("the owner's role cannot change", code="cannot_change_owner")
    svc = services(request)
    member = await svc.store.set_member_role(project_id, member_id, role)
    if member is None:
        raise not_found("no such member in this project")
    svc.role_changed(project_id, member_id, role)
    if not may_write(role):
        await release_member_locks(svc, project_id, member_id)
    return json_response({"member": member.to_json()})


async def remove_member(request: web.Request) -> web.Response:
    project_id = request.match_info["project_id"]
    owner, _ = await require_role(request, project_id, owner=True)
    member_id = request.match_info["user_id"]
    if member_id == owner.id:  # a well-formed request the project's state refuses: 409
        raise conflict("the owner cannot be removed; delete the project instead",
                       code="cannot_remove_owner")
    svc = services(request)
    if not await svc.store.remove_member(project_id, member_id):
        raise not_found("no such member in this project")
    svc.end_subscriptions(project_id, "removed from project", user_id=member_id)
    await release_member_locks(svc, project_id, member_id)
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/api/projects", create_project)
    r.add_get("/api/projects", list_projects)
    r.add_post("/api/projects/join", join)
    # Not "join": that path is its own route, and OPTIONS must not list this one's methods there.
    project = "/api/projects/{project_id:(?!join$)[^{}/]+}"
    r.add_get(project, get_project)
    r.add_patch(project, update_project)
    r.add_delete(project, delete_project)
    r.add_post("/api/projects/{project_id}/invites", create_invite)
    r.add_get("/api/projects/{project_id}/invites", list_invites)
    r.add_delete("/api/projects/{project_id}/invites/{code}", revoke_invite)
    r.add_patch("/api/projects/{project_id}/members/{user_id}", set_member_role)
    r.add_delete("/api/projects/{project_id}/members/{user_id}", remove_member)
