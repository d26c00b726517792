"""The OpenAPI 3.1 description of the HTTP API, served at ``/api/openapi.json``.

The document is a contract, and an exact one (tests/test_schemathesis.py checks it against a
running server):

- a request the document allows is accepted, or refused only for a reason that depends on state
  or on content the schema cannot see (404 absent, 409 conflict, 410 gone, 413 over a configured
  limit, 422 content that does not add up, 429 rate-limited);
- a request the document forbids is refused, with 400 (415 for a body that is not JSON);
- every status a route can answer is listed with its error codes, so a client can switch on them.

Built from a few helpers rather than written out as one large JSON file, so each operation reads
as a few lines of intent. To describe a route: add it to ``PATHS`` with ``op(...)``, naming who may
call it (which adds the 401/403/404 that follow from that), its request body (which adds the body's
400/413/415) and, in ``errors``, every other error code it can answer, by status.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from vidsync import __version__
from vidsync.changes import MAX_CHANGES_PER_BATCH, MAX_JSON_INT, MAX_PATH_BYTES, MAX_SEGMENT_BYTES
from vidsync.content.blocks import MAX_BLOCK_SIZE
from vidsync.content.links import MAX_TTL_S
from vidsync.server.auth import EMAIL_RE
from vidsync.server.http import MAX_QUERY_INT, json_response

J = dict[str, Any]
# Error codes by HTTP status, e.g. {400: ["invalid_name"], 409: ["email_taken"]}.
Errors = dict[int, list[str]]


def ref(name: str) -> J:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(required: list[str] | None = None, **props: J) -> J:
    schema: J = {"type": "object", "properties": props}
    if required:
        schema["required"] = required
    return schema


def strict(schema: J) -> J:
    """An object the server refuses when it carries fields besides its own."""
    return {**schema, "additionalProperties": False}


def integer(lo: int | None = None, hi: int | None = None, nullable: bool = False) -> J:
    schema: J = {"type": ["integer", "null"] if nullable else "integer"}
    if lo is not None:
        schema["minimum"] = lo
    if hi is not None:
        schema["maximum"] = hi
    return schema


def text(max_length: int, min_length: int = 0, pattern: str | None = None,
         description: str | None = None) -> J:
    schema: J = {"type": "string", "maxLength": max_length}
    if min_length:
        schema["minLength"] = min_length
    if pattern:
        schema["pattern"] = pattern
    if description:
        schema["description"] = description
    return schema


# Patterns are read by two regex dialects (Python's, where hypothesis draws values, and ECMA 262,
# where validators check them), so they use explicit classes (never \s, \w or .), and anchor the
# end with $(?!\n): Python's $ also matches before a final newline.


def whole(pattern: str) -> str:
    """A pattern the entire value must match."""
    return f"^(?:{pattern})$(?!\\n)"


STR: J = {"type": "string"}
INT: J = {"type": "integer"}
BOOL: J = {"type": "boolean"}
NULLABLE_STR: J = {"type": ["string", "null"]}
HASH: J = {"type": "string", "pattern": whole("[0-9a-f]{64}")}
_SPACE = r" \t\n\r\f\v"  # http.SPACE: what the server trims
# Something besides white space (the server trims names and codes, and refuses blank ones).
NOT_BLANK = f"[^{_SPACE}]"


def _path(excluded: str = "") -> str:
    """A project path: relative, '/'-separated, no empty, '.' or '..' segment, no backslash or
    control character, no drive letter, not in the agents' reserved '.vidsync/' (changes.py).
    ``excluded``: characters that end the path (',' in a list of them)."""
    segment = rf"[^/\\{excluded}\x00-\x1f\x7f]{{1,{MAX_SEGMENT_BYTES}}}"
    rest = rf"[^\n{excluded}]*"
    rules = rf"(?!\.vidsync(?:/|[{excluded}\n]|$))(?![A-Za-z]:)(?!(?:{rest}/)?\.\.?(?:/|[{excluded}\n]|$))"
    return rf"{rules}{segment}(?:/{segment})*"


PATH: J = text(MAX_PATH_BYTES, 1, whole(_path()),
               f"relative, '/'-separated, UTF-8, stored in NFC; at most {MAX_PATH_BYTES} bytes "
               f"and {MAX_SEGMENT_BYTES} per segment (characters beyond ASCII count 2 to 4)")
# A folder prefix: a path, with or without trailing slashes.
PREFIX: J = {"type": "string", "pattern": whole(_path() + "/*"),
             "description": f"a folder: at most {MAX_PATH_BYTES} bytes before any trailing slashes"}
# Selective sync: up to 100 comma-separated prefixes (empty items are ignored).
MAX_PREFIXES = 100
_ITEM = _path(",") + "/*"
PATHS_Q: J = {
    "name": "paths", "in": "query", "required": False,
    "description": "comma-separated folder prefixes (selective sync), e.g. clips/,audio/",
    "schema": {"type": "string",
               "pattern": whole(rf",*(?:{_ITEM},+){{0,{MAX_PREFIXES - 1}}}(?:{_ITEM})?")}}

EMAIL: J = text(320, pattern=whole(f"[{_SPACE}]*{EMAIL_RE.pattern}[{_SPACE}]*"),
                description="an email address (surrounding white space is trimmed; "
                            "compared case-insensitively)")

NULLABLE_HASH: J = {"anyOf": [HASH, {"type": "null"}]}
ROLE: J = {"enum": ["owner", "editor", "viewer"]}
MEMBER_ROLE: J = {"enum": ["viewer", "editor"]}
AUTHOR: J = {"type": ["object", "null"], "required": ["id", "name"],
             "properties": {"id": STR, "name": STR},
             "description": "who wrote it (the user's name as it was then)"}
BASE: J = {**NULLABLE_HASH, "description": (
    "the hash the writer's copy was made from, or null for 'the path does not exist'; absent ="
    " unconditional. 409 conflict if the path's current state differs (unless the change's"
    " result already holds)")}
INT_53: J = integer(0, MAX_JSON_INT)

SCHEMAS: J = {
    "Error": obj(["error"], error=obj(["code", "message"], code=STR, message=STR)),
    "User": obj(["id", "email", "name"], id=STR, email=STR, name=STR),
    "Auth": obj(["token", "user"], token=STR, user=ref("User")),
    # With cookie: true. No other field, so that an answer matches exactly one of Auth, CookieAuth.
    "CookieAuth": strict(obj(["user"], user=ref("User"))),
    "Project": obj(["id", "name", "owner_id", "created_at"], id=STR, name=STR, description=STR,
                   owner_id=STR, created_at=STR, last_seq=INT, last_activity_at=NULLABLE_STR,
                   role=ROLE, member_count=INT),
    "Member": obj(["user_id", "role"], user_id=STR, email=STR, name=STR, role=ROLE,
                  joined_at=STR),
    "Invite": obj(["code", "expires_at", "role"], code=STR, project_id=STR, created_at=STR,
                  expires_at=STR, max_uses={"type": ["integer", "null"]}, uses=INT,
                  role=MEMBER_ROLE),
    # A posted change. A create or update names its content (stored first: 409 content_missing
    # otherwise); a delete names none. Any other field is refused.
    "Change": {"oneOf": [
        strict(obj(["path", "op", "hash", "size"], path=PATH, op={"enum": ["create", "update"]},
                   hash={**HASH, "description": "SHA-256 of the content"}, size=INT_53,
                   mtime={**integer(0, MAX_JSON_INT, nullable=True),
                          "description": "ms since the epoch"}, base=BASE)),
        strict(obj(["path", "op"], path=PATH, op={"const": "delete"}, hash=NULLABLE_HASH,
                   size=integer(0, MAX_JSON_INT, nullable=True),
                   mtime=integer(0, MAX_JSON_INT, nullable=True), base=BASE)),
    ]},
    "StoredChange": obj(["path", "op"], path=STR, op={"enum": ["create", "update", "delete"]},
                        hash={"type": ["string", "null"]}, size={"type": ["integer", "null"]},
                        mtime={"type": ["integer", "null"]}),
    "Event": obj(["project_id", "seq", "change", "created_at", "author"], project_id=STR,
                 seq=INT, change=ref("StoredChange"), created_at=STR, author=AUTHOR),
    "PathState": obj(["hash", "seq", "author"], hash={"type": ["string", "null"]},
                     seq={"type": ["integer", "null"]}, author=AUTHOR),
    "Lock": obj(["path", "user", "acquired_at", "expires_at"], path=STR,
                user=obj(["id", "name"], id=STR, name=STR), acquired_at=STR,
                expires_at={"type": "string", "description": "the lease's end; it moves on while"
                            " the holder is connected to the project"}),
    "File": obj(["path", "hash", "size", "seq"], path=STR, hash=HASH, size=INT,
                mtime={"type": ["integer", "null"]}, seq=INT),
    "Folder": obj(["path", "file_count", "size", "mtime"], path={
        **STR, "description": "with its trailing '/'"}, file_count=INT, size=INT,
        mtime={"type": ["integer", "null"], "description": "the latest of its files'"}),
    "Version": obj(["seq", "path", "op", "hash", "size", "mtime", "author", "created_at",
                    "available"], seq=INT, path=STR, op={"enum": ["create", "update", "delete"]},
                   hash={"type": ["string", "null"]}, size={"type": ["integer", "null"]},
                   mtime={"type": ["integer", "null"]}, author=AUTHOR, created_at=STR,
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
    "Manifest": obj(["hash", "size", "blocks"], hash=HASH, size=integer(0), blocks={
        "type": "array", "description": "in file order; their sizes add up to 'size' (422 if not)",
        "items": obj(["hash", "size"], hash=HASH, size=integer(1, MAX_BLOCK_SIZE))}),
}


def body(schema: J, content_type: str = "application/json", required: bool = True) -> J:
    return {"required": required, "content": {content_type: {"schema": schema}}}


def ok(schema: J | None = None, status: str = "200", description: str = "OK",
       content_type: str = "application/json") -> J:
    response: J = {"description": description}
    if schema is not None:
        response["content"] = {content_type: {"schema": schema}}
    return {status: response}


BYTES: J = {"type": "string", "format": "binary"}
NO_CONTENT = {"204": {"description": "Done"}}
# The caller's identity and role decide these; ``op`` adds them from ``who``.
WHO_ERRORS: dict[str, Errors] = {
    "anyone": {},
    "user": {401: ["unauthorized"]},
    "member": {401: ["unauthorized"], 404: ["not_found"]},
    "owner": {401: ["unauthorized"], 403: ["forbidden"], 404: ["not_found"]},
    "owner or editor": {401: ["unauthorized"], 403: ["forbidden"], 404: ["not_found"]},
}
# What reading a JSON body can answer (http.read_json and the app's body size limit).
JSON_BODY_ERRORS: Errors = {400: ["invalid_json", "invalid_body"], 413: ["payload_too_large"],
                            415: ["unsupported_media_type"]}
RESPONSE_HEADERS: dict[int, J] = {
    401: {"WWW-Authenticate": {"schema": STR, "required": True}},
    429: {"Retry-After": {"schema": {"type": "string", "pattern": "^[0-9]+$"}, "required": True,
                          "description": "seconds"}},
}


def error_responses(errors: Errors, beside: dict[int, J] | None = None) -> J:
    """One response per status, its body's ``error.code`` one of the listed codes. ``beside``:
    fields some of them carry next to ``error`` (e.g. 409 ``conflicts``), by status."""
    responses: J = {}
    for status in sorted(errors):
        codes = sorted(set(errors[status]))
        schema = obj(["error"], error=obj(["code", "message"], code={"enum": codes}, message=STR),
                     **(beside or {}).get(status, {}))
        response: J = {"description": ", ".join(codes),
                       "content": {"application/json": {"schema": schema}}}
        if status in RESPONSE_HEADERS:
            response["headers"] = RESPONSE_HEADERS[status]
        responses[str(status)] = response
    return responses


def merge(*errors: Errors) -> Errors:
    merged: Errors = {}
    for e in errors:
        for status, codes in e.items():
            merged.setdefault(status, []).extend(codes)
    return merged


def op(summary: str, who: str, responses: J, request: J | None = None,
       params: list[J] | None = None, errors: Errors | None = None,
       beside: dict[int, J] | None = None) -> J:
    """One operation. ``who`` is one of ``WHO_ERRORS``; ``errors`` the error codes by status that
    the route answers besides those ``who`` and a JSON body imply (see ``error_responses``)."""
    reads_json = request is not None and "application/json" in request["content"]
    all_errors = merge(WHO_ERRORS[who], JSON_BODY_ERRORS if reads_json else {}, errors or {})
    operation: J = {"summary": summary, "description": f"Allowed: {who}.",
                    "responses": {**responses, **error_responses(all_errors, beside)}}
    if who != "anyone":
        operation["security"] = [{"bearer": []}, {"cookie": []}]
    if request is not None:
        operation["requestBody"] = request
    if params:
        operation["parameters"] = params
    return operation


def path_param(name: str, schema: J = STR) -> J:
    return {"name": name, "in": "path", "required": True, "schema": schema}


def query(name: str, schema: J, description: str) -> J:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}


PID = [path_param("project_id")]
# /api/projects/join is a route of its own: these methods there are 405 method_not_allowed.
PROJECT = [path_param("project_id", {"type": "string", "not": {"const": "join"}})]
# A path parameter spelled like a sibling route's literal segment (e.g. blocks/check) reaches
# that route instead, where the method may not be allowed.
SIBLING_405: Errors = {405: ["method_not_allowed"]}
HASH_PARAM = path_param("hash", HASH)
RANGE = {"name": "Range", "in": "header", "required": False, "schema": STR,
         "description": "bytes=START-END (one range; one that cannot be parsed is ignored)"}
DOWNLOAD_OK: J = {"200": {"description": "The bytes", "content": {"application/octet-stream": {
                      "schema": BYTES}}},
                  "206": {"description": "A range", "content": {"application/octet-stream": {
                      "schema": BYTES}}}}
RANGE_ERRORS: Errors = {416: ["range_not_satisfiable"]}
INVITE_TTL = integer(60, 365 * 24 * 3600)
IDEMPOTENCY_KEY: J = {"name": "Idempotency-Key", "in": "header", "required": False,
                      "description": "printable ASCII; a retry with the same key and body gets the"
                                     " first answer",
                      "schema": text(200, 1, whole(r"[\x20-\x7e]+"))}
# Any append: 423 locked when a change's path is locked by someone else (error.locks lists them).
APPEND_ERRORS: Errors = {400: ["invalid_idempotency_key"], 409: ["content_missing"],
                         422: ["idempotency_key_reused"], 423: ["locked"]}
APPENDED: J = ok(obj(["results", "last_seq"], last_seq=INT, results={
    "type": "array", "items": obj(["path", "op", "seq"], path=STR, op=STR, seq=INT)}))
# A file, 'dir/' (any trailing slashes) for a folder, '/' for the whole project.
TARGET: J = {"type": "string", "pattern": whole("/|" + _path() + "/*")}
PAGE_LIMIT = query("limit", integer(1, 1000), "default 100")
# A path in a query string: as PATH, its length bounded by the request line (like TARGET's).
LOCK_PATH_Q: J = {"type": "string", "pattern": whole(_path())}
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


PATHS: J = {
    "/api/auth/register": {"post": op(
        "Create an account (rate-limited per client address: 429 with Retry-After)", "anyone",
        signed_in("201", "Created"),
        body(obj(["email", "password"], email=EMAIL, password=text(1024, 8),
                 name={**text(200), "type": ["string", "null"],
                       "description": "default: the email's local part"}, cookie=COOKIE_FLAG)),
        errors={400: ["invalid_email", "invalid_password", "invalid_name"],
                403: ["cross_origin"], 409: ["email_taken"], 429: ["rate_limited"]})},
    "/api/auth/login": {"post": op(
        "Log in (rate-limited: 429 with Retry-After)", "anyone", signed_in("200", "OK"),
        body(obj(["email", "password"], email=EMAIL, password=text(1024, 1), cookie=COOKIE_FLAG)),
        errors={400: ["invalid_email", "invalid_password"], 401: ["unauthorized"],
                403: ["cross_origin"], 429: ["rate_limited"]})},
    "/api/auth/logout": {"post": op(
        "Revoke this token and disconnect its sockets; a session cookie is cleared", "user",
        {"204": {"description": "Done", "headers": {"Set-Cookie": {
            "description": "with a session cookie: vidsync_session=\"\"; Max-Age=0",
            "schema": STR}}}})},
    "/api/auth/me": {"get": op("The caller", "user", ok(obj(["user"], user=ref("User"))))},
    "/api/projects": {
        "post": op("Create a project", "user",
                   ok(obj(["project"], project=ref("Project")), "201", "Created"),
                   body(obj(["name"], name=text(200, 1, NOT_BLANK), description=text(5000))),
                   errors={400: ["invalid_name", "invalid_description"]}),
        "get": op("Projects the caller owns or joined, each with role and member_count", "user",
                  ok(obj(["projects"], projects={"type": "array", "items": ref("Project")}))),
    },
    "/api/projects/join": {"post": op(
        "Join with an invite code (or link), with the invite's role (an existing member keeps"
        " theirs)", "user", ok(obj(["project", "role"], project=ref("Project"), role=ROLE)),
        body(obj(["invite_code"], invite_code=text(200, 1, NOT_BLANK))),
        errors={400: ["invalid_invite_code"], 404: ["invite_not_found"],
                410: ["invite_expired", "invite_revoked", "invite_used_up"]})},
    "/api/projects/{project_id}": {
        "get": op("A project with its members and its storage use", "member",
                  ok(obj(["project", "role", "members", "usage"], project=ref("Project"),
                         role=ROLE, members={"type": "array", "items": ref("Member")},
                         usage=ref("Usage"))), params=PROJECT, errors=SIBLING_405),
        "patch": op("Rename or redescribe (a field left out is unchanged)", "owner",
                    ok(obj(["project"], project=ref("Project"))),
                    body(obj(name=text(200, 1, NOT_BLANK), description=text(5000))), PROJECT,
                    errors={400: ["invalid_name", "invalid_description"], **SIBLING_405}),
        "delete": op("Delete the project and end its subscriptions", "owner", NO_CONTENT,
                     params=PROJECT, errors=SIBLING_405),
    },
    "/api/projects/{project_id}/invites": {
        "post": op("Create an invite code granting a role (no body: the defaults)", "owner",
                   ok(obj(["invite"], invite=ref("Invite")), "201", "Created"),
                   body(obj(expires_in_s={**INVITE_TTL, "description": "default 7 days"},
                            max_uses={**integer(1, 100_000, nullable=True),
                                      "description": "default (or null): unlimited"},
                            role={**MEMBER_ROLE, "default": "viewer"}),
                        required=False), PID,
                   errors={400: ["invalid_expires_in_s", "invalid_max_uses", "invalid_role"]}),
        "get": op("Invites that can still be redeemed", "owner",
                  ok(obj(["invites"], invites={"type": "array", "items": ref("Invite")})),
                  params=PID),
    },
    "/api/projects/{project_id}/invites/{code}": {"delete": op(
        "Revoke an invite", "owner", NO_CONTENT, params=[*PID, path_param("code")])},
    "/api/projects/{project_id}/members/{user_id}": {
        "patch": op("Change a member's role, at once on every node: their live subscriptions"
                    " get project:role, and a demoted editor's next post is refused (409 for"
                    " the owner)", "owner", ok(obj(["member"], member=ref("Member"))),
                    body(obj(["role"], role=MEMBER_ROLE)), [*PID, path_param("user_id")],
                    errors={400: ["invalid_role"], 409: ["cannot_change_owner"]}),
        "delete": op("Remove a member; their live subscriptions end at once (409 for the owner:"
                     " delete the project instead)", "owner", NO_CONTENT,
                     params=[*PID, path_param("user_id")],
                     errors={409: ["cannot_remove_owner"]}),
    },
    "/api/projects/{project_id}/files/update": {"post": op(
        "Append 1 to 1000 changes as events with consecutive seqs, authored by the caller"
        " (atomic: all or nothing; idempotent with Idempotency-Key). 409 conflict lists every"
        " change whose base is not its path's current state; nothing is appended",
        "owner or editor", APPENDED,
        body(obj(["changes"], changes={"type": "array", "minItems": 1,
                                       "maxItems": MAX_CHANGES_PER_BATCH, "items": ref("Change")})),
        [*PID, IDEMPOTENCY_KEY],
        errors=merge(APPEND_ERRORS, {400: ["invalid_change"], 409: ["conflict"]}),
        beside={409: {"conflicts": {"type": "array", "items": obj(
            ["index", "path", "current"], index=INT, path=STR, current=ref("PathState"))}}})},
    "/api/projects/{project_id}/locks": {
        "post": op("Lock a file for the caller: a lease kept while they are connected to the"
                   " project, --lock-ttl after they have gone; the holder locking again renews it"
                   " (200). 409 locked with the holder in error.lock", "owner or editor",
                   {**ok(obj(["lock"], lock=ref("Lock")), "201", "Locked"),
                    **ok(obj(["lock"], lock=ref("Lock")), "200", "Renewed (the caller held it)")},
                   body(strict(obj(["path"], path=PATH))), PID,
                   errors={400: ["invalid_path"], 409: ["locked", "too_many_locks"]}),
        "get": op("The project's live locks, in path order", "member",
                  ok(obj(["locks"], locks={"type": "array", "items": ref("Lock")})), params=PID),
        "delete": op("Release a lock (its holder), or break anyone's (the owner); 403 for someone"
                     " else's lock, 404 when the path is not locked", "member", NO_CONTENT,
                     params=[*PID, {"name": "path", "in": "query", "required": True,
                                    "schema": LOCK_PATH_Q}],
                     errors={400: ["invalid_path"], 403: ["forbidden"]}),
    },
    "/api/projects/{project_id}/events": {"get": op(
        "Events after since_seq, in order; wait=S long-polls when there are none", "member",
        ok(obj(["events", "last_seq", "has_more"], last_seq=INT, has_more=BOOL,
               events={"type": "array", "items": ref("Event")})),
        params=[*PID, query("since_seq", integer(0, MAX_QUERY_INT), "default 0"),
                query("limit", integer(1, 1000), "default 100"),
                query("wait", integer(0, 60), "seconds, default 0"), PATHS_Q],
        errors={400: ["invalid_query", "invalid_paths"]})},
    "/api/projects/{project_id}/files": {"get": op(
        "Every live file and the seq the listing reflects; with dir, one level of them: the"
        " files directly in that folder, and its folders with totals over everything under each",
        "member",
        ok(obj(["files", "seq"], seq=INT, files={"type": "array", "items": ref("File")},
               folders={"type": "array", "items": ref("Folder"),
                        "description": "with dir only, in path order"})),
        params=[*PID, PATHS_Q, query("dir", TARGET, "list one folder ('dir/', '/' for the root)"
                                    " instead of every file")],
        errors={400: ["invalid_paths", "invalid_path"]})},
    "/api/projects/{project_id}/files/history": {"get": op(
        "A path's versions, newest first (a folder's with 'dir/', the whole project's with"
        " '/'); page with before_seq = the last seq returned", "member",
        ok(obj(["versions", "has_more"], has_more=BOOL,
               versions={"type": "array", "items": ref("Version")})),
        params=[*PID, {"name": "path", "in": "query", "required": True, "schema": TARGET,
                       "description": "a file path, 'dir/' for a folder, '/' for everything"},
                query("before_seq", integer(1, MAX_QUERY_INT), "only versions before it"),
                PAGE_LIMIT],
        errors={400: ["invalid_path", "invalid_query"]})},
    "/api/projects/{project_id}/files/deleted": {"get": op(
        "Paths whose last event is a delete, with the last version they had, in path order;"
        " page with after = the last path returned", "member",
        ok(obj(["files", "has_more"], has_more=BOOL, files={
            "type": "array", "items": obj(["path", "deleted_seq", "deleted_at", "last_version"],
                                          path=STR, deleted_seq=INT, deleted_at=STR,
                                          last_version=ref("Version"))})),
        params=[*PID, query("prefix", TARGET, "only under this folder ('dir/'); default '/'"),
                query("after", STR, "only paths after this one"), PAGE_LIMIT],
        errors={400: ["invalid_path", "invalid_query"]})},
    "/api/projects/{project_id}/files/restore": {"post": op(
        "Bring back a file's version (seq = one of its versions: 404 not_a_version otherwise),"
        " or make a folder ('dir/', or '/' for all) match what it held as of seq (422"
        " invalid_seq past the end of the log): its files of then come back and files created"
        " under it since are deleted. Appends one batch like files/update (same response; empty"
        " results when nothing differs; Idempotency-Key honoured); 410 expired when content is"
        " no longer kept (paths listed), 413 too_many_changes over 10000", "owner or editor",
        APPENDED, body(strict(obj(["path", "seq"], path=TARGET, seq=integer(1, MAX_JSON_INT)))),
        [*PID, IDEMPOTENCY_KEY],
        errors=merge(APPEND_ERRORS, {400: ["invalid_path", "invalid_seq"],
                                     404: ["not_a_version"], 410: ["expired"],
                                     413: ["too_many_changes"], 422: ["invalid_seq"]}))},
    "/api/projects/{project_id}/blocks/check": {"post": op(
        "Which of these blocks the server lacks", "owner or editor",
        ok(obj(["missing"], missing={"type": "array", "items": HASH})),
        body(obj(["hashes"], hashes={"type": "array", "maxItems": 10000, "items": HASH})), PID,
        errors={400: ["invalid_hashes"]})},
    "/api/projects/{project_id}/blocks/{hash}": {
        "put": op("Store a block (hash checked on arrival)", "owner or editor",
                  {**ok(obj(["hash", "stored"], hash=HASH, stored=BOOL), "201", "Stored"),
                   **ok(obj(["hash", "stored"], hash=HASH, stored=BOOL), "200", "Already stored")},
                  body({**BYTES, "description": f"at most {MAX_BLOCK_SIZE} bytes"},
                       "application/octet-stream"),
                  [*PID, HASH_PARAM],
                  errors={400: ["invalid_hash"], 413: ["block_too_large", "quota_exceeded"],
                          422: ["hash_mismatch"], **SIBLING_405}),
        "get": op("A block's bytes (Range supported)", "member", DOWNLOAD_OK,
                  params=[*PID, HASH_PARAM, RANGE],
                  errors={400: ["invalid_hash"], **RANGE_ERRORS, **SIBLING_405}),
    },
    "/api/projects/{project_id}/manifests": {"post": op(
        "Record a file as its list of blocks (all stored; whole-file hash verified). Posted"
        " before its blocks: 409 missing_blocks {missing} lists what to send, the upload is"
        " remembered (blocks hashed in order as they land) and, with 'path', announced to"
        " members as project:upload", "owner or editor",
        {**ok(obj(["manifest"], manifest=ref("Manifest")), "201", "Created"),
         **ok(obj(["manifest"], manifest=ref("Manifest")), "200", "Already stored")},
        body({"allOf": [ref("Manifest"), obj(path={
            "anyOf": [PATH, {"type": "null"}],
            "description": "the file's path in the project, to announce the upload"})]}), PID,
        errors={400: ["invalid_manifest", "invalid_path"], 409: ["missing_blocks"],
                413: ["file_too_large", "quota_exceeded"],
                422: ["invalid_manifest", "block_size_mismatch", "hash_mismatch"]})},
    "/api/projects/{project_id}/manifests/{hash}": {"get": op(
        "A file's blocks", "member", ok(ref("Manifest")), params=[*PID, HASH_PARAM],
        errors={400: ["invalid_hash"]})},
    "/api/projects/{project_id}/content/{hash}": {"get": op(
        "A whole file (Range supported)", "member", DOWNLOAD_OK,
        params=[*PID, HASH_PARAM, RANGE], errors={400: ["invalid_hash"], **RANGE_ERRORS})},
    "/api/projects/{project_id}/content-batch": {"post": op(
        "Store many small files at once (an image sequence): each as one block and its"
        " single-block manifest, every file's bytes hashed here first; one mismatch refuses the"
        " whole batch (422 hash_mismatch with its index, nothing stored). At most 1000 files of"
        " at most 131072 bytes, 16777216 bytes of content and a 25165824-byte body per batch;"
        " made durable before the answer", "owner or editor",
        ok(obj(["stored", "files"], stored={**INT, "description": "files not stored before"},
               files={"type": "array", "items": obj(["hash", "stored"], hash=HASH,
                                                     stored=BOOL)})),
        body(obj(["files"], files={"type": "array", "minItems": 1, "maxItems": 1000, "items": obj(
            ["hash", "data"], hash=HASH, data={
                "type": "string", "contentEncoding": "base64", "maxLength": 174764,
                "pattern": "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$",
                "description": "the file's bytes, base64 (RFC 4648, padded)"})})), PID,
        errors={400: ["invalid_files"],
                413: ["batch_too_large", "file_too_large", "quota_exceeded"],
                422: ["hash_mismatch"]})},
    "/api/projects/{project_id}/content-batch/get": {"post": op(
        "Many small files' bytes at once, base64 (the caller checks each against its hash);"
        " stored files over 131072 bytes are listed in too_large (fetch those whole), unknown"
        " ones in missing. At most 1000 hashes and 16777216 bytes of content per batch"
        " (413 batch_too_large)", "member",
        ok(obj(["files", "missing", "too_large"],
               files={"type": "array", "items": obj(["hash", "data"], hash=HASH, data={
                   "type": "string", "contentEncoding": "base64"})},
               missing={"type": "array", "items": HASH},
               too_large={"type": "array", "items": HASH})),
        body(obj(["hashes"], hashes={"type": "array", "minItems": 1, "maxItems": 1000,
                                     "items": HASH})), PID,
        errors={400: ["invalid_hashes"], 413: ["batch_too_large"]})},
    "/api/projects/{project_id}/download-links": {"post": op(
        "A short-lived signed URL for a browser download: {path} for a file, {prefix} for a"
        " folder as a zip ('' or '/': the whole project); with inline, a URL to play an"
        " allow-listed audio or video file in the page (its media type, Range, pinned to the"
        " file's current content; 422 not_playable for other files)", "member",
        ok(obj(["url", "expires_at"], url=STR, expires_at=STR,
               media_type={"type": "string", "description": "with inline"},
               poster_url={"type": ["string", "null"], "description": "with inline: the poster"
                           " frame's URL; null for audio or without ffmpeg on the server"})),
        body({**obj(path=PATH, prefix={"anyOf": [PREFIX, {"type": "string",
                                                          "pattern": whole("/*")}]},
                    expires_in_s={**integer(1, MAX_TTL_S), "description": "default 300"},
                    inline={"type": "boolean", "default": False,
                            "description": "to play in the page (a path only)"}),
              "oneOf": [{"required": ["path"], "not": {"required": ["prefix"]}},
                        {"required": ["prefix"], "not": {"required": ["path"]},
                         "properties": {"inline": {"const": False}}}]}),
        PID, errors={400: ["invalid_path", "invalid_paths", "invalid_expires_in_s",
                           "invalid_inline"], 422: ["not_playable"]})},
    "/api/download/{token}": {"get": op(
        "Open a download link (no header needed): the file (Range supported) or a folder as a"
        " zip, or an inline link's file to play (its media type, inline)", "anyone",
        {"200": {"description": "The bytes, as an attachment (inline for a link to play)",
                 "content": {"application/octet-stream": {"schema": BYTES},
                             "application/zip": {"schema": BYTES},
                             "audio/*": {"schema": BYTES}, "video/*": {"schema": BYTES}}},
         "206": {"description": "A range", "content": {
             "application/octet-stream": {"schema": BYTES}, "audio/*": {"schema": BYTES},
             "video/*": {"schema": BYTES}}}},
        params=[path_param("token"), RANGE],
        errors={403: ["invalid_link", "link_revoked"], 404: ["not_found"],
                409: ["content_missing"], 410: ["link_expired"], **RANGE_ERRORS})},
    "/api/download/{token}/poster": {"get": op(
        "An inline link's poster frame (JPEG, made by ffmpeg on the server and cached per"
        " content); 404 no_poster without ffmpeg, for audio, or when ffmpeg cannot read the file",
        "anyone", ok(BYTES, description="The frame", content_type="image/jpeg"),
        params=[path_param("token")],
        errors={403: ["invalid_link", "link_revoked"], 404: ["not_found", "no_poster"],
                410: ["link_expired"]})},
    "/api/openapi.json": {"get": op("This document", "anyone", ok(obj()))},
    "/healthz": {"get": op("Liveness", "anyone",
                           ok(obj(["ok", "time"], ok=BOOL, time={"type": "number"})))},
    "/readyz": {"get": op(
        "Readiness: the database answers and, with --redis, the backplane is up", "anyone",
        {**ok(obj(["ok", "checks"], ok=BOOL, checks=obj())),
         **ok(obj(["ok", "checks"], ok=BOOL, checks=obj()), "503", "Not ready")})},
    "/metrics": {"get": op(
        "Prometheus metrics (text format); with --metrics-token, that token as a bearer token",
        "anyone", ok(STR, description="Prometheus text exposition format",
                     content_type="text/plain"),
        errors={401: ["unauthorized"]})},
}

DOCUMENT: J = {
    "openapi": "3.1.0",
    "info": {"title": "Vidsync", "version": __version__,
             "description": "Real-time delivery is Socket.IO v5 at /socket.io/; see docs/protocol.md."
                            " A 400 means the request breaks this document; 404, 409, 410, 413"
                            " and 422 refuse a well-formed request for what the server holds."},
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
