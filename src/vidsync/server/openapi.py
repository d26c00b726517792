"""The OpenAPI 3.1 description of the HTTP API, served at ``/api/openapi.json``.

Built from a few helpers rather than written out as one large JSON file, so each operation reads
as one line of intent. A test checks that every route the app serves is described here.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from vidsync import __version__
from vidsync.server.http import json_response

J = dict[str, Any]


def ref(name: str) -> J:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(required: list[str] | None = None, **props: J) -> J:
    schema: J = {"type": "object", "properties": props}
    if required:
        schema["required"] = required
    return schema


STR: J = {"type": "string"}
INT: J = {"type": "integer"}
NULLABLE_STR: J = {"type": ["string", "null"]}
HASH: J = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
NULLABLE_HASH: J = {"type": ["string", "null"], "pattern": "^[0-9a-f]{64}$"}
ROLE: J = {"enum": ["owner", "editor", "viewer"]}
MEMBER_ROLE: J = {"enum": ["viewer", "editor"]}
AUTHOR: J = {"type": ["object", "null"], "required": ["id", "name"],
             "properties": {"id": STR, "name": STR},
             "description": "who wrote it (the user's name as it was then)"}

SCHEMAS: J = {
    "Error": obj(["error"], error=obj(["code", "message"], code=STR, message=STR)),
    "User": obj(["id", "email", "name"], id=STR, email=STR, name=STR),
    "Auth": obj(["token", "user"], token=STR, user=ref("User")),
    # With cookie: true. No other field, so that an answer matches exactly one of Auth, CookieAuth.
    "CookieAuth": {**obj(["user"], user=ref("User")), "additionalProperties": False},
    "Project": obj(["id", "name", "owner_id", "created_at"], id=STR, name=STR, description=STR,
                   owner_id=STR, created_at=STR, last_seq=INT, last_activity_at=NULLABLE_STR,
                   role=ROLE, member_count=INT),
    "Member": obj(["user_id", "role"], user_id=STR, email=STR, name=STR, role=ROLE,
                  joined_at=STR),
    "Invite": obj(["code", "expires_at", "role"], code=STR, project_id=STR, created_at=STR,
                  expires_at=STR, max_uses={"type": ["integer", "null"]}, uses=INT,
                  role=MEMBER_ROLE),
    "Change": obj(["path", "op"],
                  path={"type": "string", "maxLength": 4096,
                        "description": "relative, '/'-separated, UTF-8 (stored in NFC)"},
                  op={"enum": ["create", "update", "delete"]},
                  hash={"type": ["string", "null"], "pattern": "^[0-9a-f]{64}$",
                        "description": "SHA-256 of the content; required for create and update"},
                  size={"type": ["integer", "null"], "minimum": 0},
                  mtime={"type": ["integer", "null"], "description": "ms since the epoch"}),
    # A posted change: a Change that may carry the version it was made from.
    "ChangeIn": {"allOf": [ref("Change")], "properties": {"base": {
        **NULLABLE_HASH, "description": "the hash the writer's copy was made from, or null for"
        " 'the path does not exist'; absent = unconditional. 409 conflict if the path's current"
        " state differs (unless the change's result already holds)"}}},
    "Event": obj(["project_id", "seq", "change", "created_at", "author"], project_id=STR,
                 seq=INT, change=ref("Change"), created_at=STR, author=AUTHOR),
    "PathState": obj(["hash", "seq", "author"], hash=NULLABLE_HASH,
                     seq={"type": ["integer", "null"]}, author=AUTHOR),
    "Conflicts": obj(["error", "conflicts"], error=obj(["code", "message"], code={
        "const": "conflict"}, message=STR), conflicts={"type": "array", "items": obj(
            ["index", "path", "current"], index=INT, path=STR, current=ref("PathState"))}),
    "File": obj(["path", "hash", "size", "seq"], path=STR, hash=HASH, size=INT,
                mtime={"type": ["integer", "null"]}, seq=INT),
    "Version": obj(["seq", "path", "op", "hash", "size", "mtime", "author", "created_at",
                    "available"], seq=INT, path=STR, op={"enum": ["create", "update", "delete"]},
                   hash={"type": ["string", "null"], "pattern": "^[0-9a-f]{64}$"},
                   size={"type": ["integer", "null"]}, mtime={"type": ["integer", "null"]},
                   author=AUTHOR,
                   created_at=STR,
                   available={"type": "boolean", "description": "its content is still stored, "
                              "so it can be restored (false for a delete)"}),
    "Usage": obj(["live_bytes", "history_bytes", "pending_bytes", "reclaimable_bytes",
                  "stored_bytes", "quota_bytes", "retention_s"],
                 live_bytes={**INT, "description": "distinct blocks the live files use"},
                 history_bytes={**INT, "description": "distinct blocks only restorable versions"
                                " use"},
                 pending_bytes={**INT, "description": "blocks of recent uploads no event names"
                                " yet"},
                 reclaimable_bytes={**INT, "description": "blocks the next collection removes"},
                 stored_bytes={**INT, "description": "every block stored (what the quota "
                               "counts)"},
                 quota_bytes=INT, retention_s={"type": "number"}),
    "Manifest": obj(["hash", "size", "blocks"], hash=HASH, size=INT,
                    blocks={"type": "array", "items": obj(["hash", "size"], hash=HASH, size=INT)}),
}


def body(schema: J, content_type: str = "application/json") -> J:
    return {"required": True, "content": {content_type: {"schema": schema}}}


def ok(schema: J | None = None, status: str = "200", description: str = "OK") -> J:
    response: J = {"description": description}
    if schema is not None:
        response["content"] = {"application/json": {"schema": schema}}
    return {status: response}


def error(status: str, description: str, schema: J | None = None) -> J:
    """A documented error status: ``description`` names its error codes."""
    return {status: {"description": description,
                     "content": {"application/json": {"schema": schema or ref("Error")}}}}


def op(summary: str, who: str, responses: J, request: J | None = None,
       params: list[J] | None = None) -> J:
    operation: J = {"summary": summary, "description": f"Allowed: {who}.",
                    "responses": {**responses,
                                  "4XX": {"description": "Error",
                                          "content": {"application/json": {"schema": ref("Error")}}}}}
    if who != "anyone":
        operation["security"] = [{"bearer": []}, {"cookie": []}]
    if request is not None:
        operation["requestBody"] = request
    if params:
        operation["parameters"] = params
    return operation


def path_param(name: str) -> J:
    return {"name": name, "in": "path", "required": True, "schema": STR}


def query(name: str, schema: J, description: str) -> J:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}


PID = [path_param("project_id")]
COOKIE_FLAG: J = {"type": "boolean", "default": False, "description": (
    "true: answer with the token in an HttpOnly, SameSite=Strict session cookie (vidsync_session;"
    " Secure over https) instead of in the body. Only for a same-origin request (Origin) that"
    " sends X-Requested-With; otherwise 403 cross_origin")}


def signed_in(status: str, description: str) -> J:
    """The answer to a login or registration: the token in the body, or in the cookie."""
    return {status: {
        "description": description,
        "headers": {"Set-Cookie": {"description": "with cookie: true only: the session cookie",
                                   "schema": STR}},
        "content": {"application/json": {"schema": {"oneOf": [ref("Auth"), ref("CookieAuth")]}}}}}
NO_CONTENT = {"204": {"description": "Done"}}
PATHS_Q = query("paths", STR, "comma-separated path prefixes (selective sync), e.g. clips/,audio/")

PATHS: J = {
    "/api/auth/register": {"post": op(
        "Create an account", "anyone", signed_in("201", "Created"),
        body(obj(["email", "password"], email=STR, password={"type": "string", "minLength": 8},
                 name=STR, cookie=COOKIE_FLAG)))},
    "/api/auth/login": {"post": op(
        "Log in (rate-limited: 429 with Retry-After)", "anyone", signed_in("200", "OK"),
        body(obj(["email", "password"], email=STR, password=STR, cookie=COOKIE_FLAG)))},
    "/api/auth/logout": {"post": op(
        "Revoke this token and disconnect its sockets; a session cookie is cleared", "user",
        {"204": {"description": "Done", "headers": {"Set-Cookie": {
            "description": "with a session cookie: vidsync_session=\"\"; Max-Age=0",
            "schema": STR}}}})},
    "/api/auth/me": {"get": op("The caller", "user", ok(obj(["user"], user=ref("User"))))},
    "/api/projects": {
        "post": op("Create a project", "user",
                   ok(obj(["project"], project=ref("Project")), "201", "Created"),
                   body(obj(["name"], name=STR, description=STR))),
        "get": op("Projects the caller owns or joined, each with role and member_count", "user",
                  ok(obj(["projects"], projects={"type": "array", "items": ref("Project")}))),
    },
    "/api/projects/join": {"post": op(
        "Join with an invite code (or link), with the invite's role (an existing member keeps"
        " theirs)", "user",
        ok(obj(["project", "role"], project=ref("Project"), role=ROLE)),
        body(obj(["invite_code"], invite_code=STR)))},
    "/api/projects/{project_id}": {
        "get": op("A project with its members", "member",
                  ok(obj(["project", "role", "members", "usage"], project=ref("Project"), role=STR,
                         members={"type": "array", "items": ref("Member")},
                         usage=ref("Usage"))), params=PID),
        "patch": op("Rename or redescribe", "owner", ok(obj(["project"], project=ref("Project"))),
                    body(obj(name=STR, description=STR)), PID),
        "delete": op("Delete the project and end its subscriptions", "owner", NO_CONTENT,
                     params=PID),
    },
    "/api/projects/{project_id}/invites": {
        "post": op("Create an invite code granting a role (viewer unless told)", "owner",
                   {**ok(obj(["invite"], invite=ref("Invite")), "201", "Created"),
                    **error("400", "invalid_body, invalid_expires_in_s, invalid_max_uses,"
                            " invalid_role"),
                    **error("403", "forbidden: not the owner")},
                   body(obj(expires_in_s={"type": "integer", "minimum": 60,
                                          "maximum": 365 * 24 * 3600},
                            max_uses={"type": "integer", "minimum": 1, "maximum": 100_000},
                            role={**MEMBER_ROLE, "default": "viewer"})), PID),
        "get": op("Invites that can still be redeemed", "owner",
                  ok(obj(["invites"], invites={"type": "array", "items": ref("Invite")})),
                  params=PID),
    },
    "/api/projects/{project_id}/invites/{code}": {"delete": op(
        "Revoke an invite", "owner", NO_CONTENT, params=[*PID, path_param("code")])},
    "/api/projects/{project_id}/members/{user_id}": {
        "patch": op("Change a member's role, at once on every node: their live subscriptions"
                    " get project:role, and a demoted editor's next post is refused", "owner",
                    {**ok(obj(["member"], member=ref("Member"))),
                     **error("400", "invalid_body, invalid_role, cannot_change_owner"),
                     **error("403", "forbidden: not the owner"),
                     **error("404", "not_found: no such project or member")},
                    body(obj(["role"], role=MEMBER_ROLE)), [*PID, path_param("user_id")]),
        "delete": op("Remove a member (not the owner); their live subscriptions end at once",
                     "owner", NO_CONTENT, params=[*PID, path_param("user_id")]),
    },
    "/api/projects/{project_id}/files/update": {"post": op(
        "Append 1 to 1000 changes as events with consecutive seqs, authored by the caller"
        " (atomic: all or nothing; idempotent with Idempotency-Key)", "owner or editor",
        {**ok(obj(["results", "last_seq"], last_seq=INT, results={
            "type": "array", "items": obj(["path", "op", "seq"], path=STR, op=STR, seq=INT)})),
         **error("400", "invalid_json, invalid_body, invalid_change (with index; a base of the"
                 " wrong shape too), invalid_idempotency_key"),
         **error("403", "forbidden: a viewer"),
         **error("404", "not_found: no such project, or not a member"),
         **error("409", "conflict: a change's base is not its path's current state (every such"
                 " change listed in conflicts; nothing appended); content_missing (with index)",
                 {"anyOf": [ref("Conflicts"), ref("Error")]}),
         **error("422", "idempotency_key_reused")},
        body(obj(["changes"], changes={"type": "array", "minItems": 1, "maxItems": 1000,
                                       "items": ref("ChangeIn")})),
        [*PID, {"name": "Idempotency-Key", "in": "header", "required": False,
                "schema": {"type": "string", "maxLength": 200}}])},
    "/api/projects/{project_id}/events": {"get": op(
        "Events after since_seq, in order; wait=S long-polls when there are none", "member",
        ok(obj(["events", "last_seq", "has_more"], last_seq=INT, has_more={"type": "boolean"},
               events={"type": "array", "items": ref("Event")})),
        params=[*PID, query("since_seq", {"type": "integer", "minimum": 0}, "default 0"),
                query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "default 100"),
                query("wait", {"type": "integer", "minimum": 0, "maximum": 60}, "seconds"),
                PATHS_Q])},
    "/api/projects/{project_id}/files": {"get": op(
        "Every live file and the seq the listing reflects", "member",
        ok(obj(["files", "seq"], seq=INT, files={"type": "array", "items": ref("File")})),
        params=[*PID, PATHS_Q])},
    "/api/projects/{project_id}/files/history": {"get": op(
        "A path's versions, newest first (a folder's with 'dir/', the whole project's with"
        " '/'); page with before_seq = the last seq returned. 400 invalid_path", "member",
        ok(obj(["versions", "has_more"], has_more={"type": "boolean"},
               versions={"type": "array", "items": ref("Version")})),
        params=[*PID, {"name": "path", "in": "query", "required": True, "schema": STR,
                       "description": "a file path, 'dir/' for a folder, '/' for everything"},
                query("before_seq", {"type": "integer", "minimum": 1}, "only versions before it"),
                query("limit", {"type": "integer", "minimum": 1, "maximum": 1000},
                      "default 100")])},
    "/api/projects/{project_id}/files/deleted": {"get": op(
        "Paths whose last event is a delete, with the last version they had, in path order;"
        " page with after = the last path returned", "member",
        ok(obj(["files", "has_more"], has_more={"type": "boolean"}, files={
            "type": "array", "items": obj(["path", "deleted_seq", "deleted_at", "last_version"],
                                          path=STR, deleted_seq=INT, deleted_at=STR,
                                          last_version=ref("Version"))})),
        params=[*PID, query("prefix", STR, "only under this folder ('dir/'); default '/'"),
                query("after", STR, "only paths after this one"),
                query("limit", {"type": "integer", "minimum": 1, "maximum": 1000},
                      "default 100")])},
    "/api/projects/{project_id}/files/restore": {"post": op(
        "Bring back a file's version (seq = one of its versions), or make a folder ('dir/', or"
        " '/' for all) match what it held as of seq: its files of then come back and files"
        " created under it since are deleted. Appends one batch like files/update (same"
        " response; empty results when nothing differs; Idempotency-Key honoured). 400"
        " invalid_body / invalid_path / invalid_seq, 403 forbidden (viewers), 404"
        " not_a_version, 410 expired (content no longer kept; paths listed), 413"
        " too_many_changes (over 10000)", "owner or editor",
        ok(obj(["results", "last_seq"], last_seq=INT, results={
            "type": "array", "items": obj(["path", "op", "seq"], path=STR, op=STR, seq=INT)})),
        body(obj(["path", "seq"], path={"type": "string", "maxLength": 4097},
                 seq={"type": "integer", "minimum": 1})),
        [*PID, {"name": "Idempotency-Key", "in": "header", "required": False,
                "schema": {"type": "string", "maxLength": 200}}])},
    "/api/projects/{project_id}/blocks/check": {"post": op(
        "Which of these blocks the server lacks", "owner or editor",
        ok(obj(["missing"], missing={"type": "array", "items": HASH})),
        body(obj(["hashes"], hashes={"type": "array", "maxItems": 10000, "items": HASH})), PID)},
    "/api/projects/{project_id}/blocks/{hash}": {
        "put": op("Store a block (hash checked on arrival)", "owner or editor",
                  {**ok(None, "201", "Stored"), **ok(None, "200", "Already stored")},
                  body({"type": "string", "format": "binary"}, "application/octet-stream"),
                  [*PID, path_param("hash")]),
        "get": op("A block's bytes (Range supported)", "member",
                  {"200": {"description": "The bytes"}, "206": {"description": "A range"}},
                  params=[*PID, path_param("hash")]),
    },
    "/api/projects/{project_id}/manifests": {"post": op(
        "Record a file as its list of blocks (all stored; whole-file hash verified). Posted "
        "before its blocks: 409 missing_blocks {missing} lists what to send, the upload is "
        "remembered (blocks hashed in order as they land) and, with 'path', announced to "
        "members as project:upload", "owner or editor",
        {**ok(obj(["manifest"], manifest=ref("Manifest")), "201", "Created"),
         **ok(obj(["manifest"], manifest=ref("Manifest")), "200", "Already stored")},
        body({"allOf": [ref("Manifest"), obj(path={
            "type": "string", "maxLength": 4096,
            "description": "the file's path in the project, to announce the upload"})]}),
        PID)},
    "/api/projects/{project_id}/manifests/{hash}": {"get": op(
        "A file's blocks", "member", ok(ref("Manifest")), params=[*PID, path_param("hash")])},
    "/api/projects/{project_id}/content/{hash}": {"get": op(
        "A whole file (Range supported)", "member",
        {"200": {"description": "The bytes"}, "206": {"description": "A range"}},
        params=[*PID, path_param("hash")])},
    "/api/projects/{project_id}/download-links": {"post": op(
        "A short-lived signed URL for a browser download (a file, or a folder as a zip); with"
        " inline, a URL to play an allow-listed audio or video file in the page (its media type,"
        " Range, pinned to the file's current content; 400 not_playable for other files)",
        "member", ok(obj(["url", "expires_at"], url=STR, expires_at=STR,
                         media_type={"type": "string", "description": "with inline"},
                         poster_url={"type": ["string", "null"], "description": "with inline:"
                                     " the poster frame's URL; null for audio or without"
                                     " ffmpeg on the server"})),
        body(obj(path=STR, prefix=STR, expires_in_s={"type": "integer", "minimum": 1,
                                                     "maximum": 3600},
                 inline={"type": "boolean", "default": False,
                         "description": "to play in the page (a path only)"})), PID)},
    "/api/download/{token}": {"get": op(
        "Open a download link (no header needed): the file (Range supported) or a folder as a"
        " zip, or an inline link's file to play (its media type, inline); 403 invalid_link /"
        " link_revoked, 410 link_expired, 416 range_not_satisfiable", "anyone",
        {"200": {"description": "The bytes, as an attachment (inline for a link to play)"},
         "206": {"description": "A range"}},
        params=[path_param("token")])},
    "/api/download/{token}/poster": {"get": op(
        "An inline link's poster frame (JPEG, made by ffmpeg on the server and cached per"
        " content); 404 no_poster without ffmpeg, for audio, or when ffmpeg cannot read the file",
        "anyone", {"200": {"description": "image/jpeg"}}, params=[path_param("token")])},
    "/api/openapi.json": {"get": op("This document", "anyone", ok(obj()))},
    "/healthz": {"get": op("Liveness", "anyone", ok(obj(ok={"type": "boolean"})))},
    "/readyz": {"get": op(
        "Readiness: the database answers and, with --redis, the backplane is up (503 if not)",
        "anyone", ok(obj(["ok", "checks"], ok={"type": "boolean"}, checks=obj())))},
    "/metrics": {"get": op(
        "Prometheus metrics (text format); with --metrics-token, that token as a bearer token",
        "anyone", {"200": {"description": "Prometheus text exposition format"}})},
}

DOCUMENT: J = {
    "openapi": "3.1.0",
    "info": {"title": "Vidsync", "version": __version__,
             "description": "Real-time delivery is Socket.IO v5 at /socket.io/; see docs/protocol.md."},
    "paths": PATHS,
    "components": {"schemas": SCHEMAS,
                   "securitySchemes": {
                       "bearer": {"type": "http", "scheme": "bearer"},
                       "cookie": {"type": "apiKey", "in": "cookie", "name": "vidsync_session",
                                  "description": "The web UI's session (login with cookie: true)."
                                  " Counts only on same-origin requests: Origin the server's own"
                                  " (or, for GET and HEAD, Sec-Fetch-Site: same-origin), and"
                                  " X-Requested-With on any other method; see docs/protocol.md"}}},
}


async def openapi(request: web.Request) -> web.Response:
    return json_response(DOCUMENT)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/openapi.json", openapi)
