"""PostgreSQL, for several server nodes sharing one database (asyncpg, one connection pool).

Why it is safe with many writers: ``append_events`` bumps the project's counter with
``UPDATE projects SET last_seq = last_seq + n ... RETURNING`` inside the transaction that inserts
the events. The update locks the project's row until commit, so concurrent appends to one project,
from any node, take turns: seqs are gap-free and unique (no ``max()+1`` race), and a project's
appends commit in seq order, so every snapshot sees a prefix of its log. Multi-statement reads
(events and the log's end, files and their seq) are one statement, hence one snapshot.

Timestamps are cut to milliseconds before they are stored, as SQLite stores them, so an event sent
live and the same event read back from the log are identical.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import astuple
from datetime import UTC, datetime, timedelta

import asyncpg

from vidsync.changes import Change
from vidsync.errors import not_found
from vidsync.store import migrations
from vidsync.store.base import (
    USAGE_COLUMNS,
    USAGE_SET,
    WRITER_ROLES,
    AppendResult,
    Author,
    Conflict,
    DeletedFile,
    Event,
    FileEntry,
    FolderEntry,
    IdempotencyMismatch,
    Invite,
    InviteError,
    Lock,
    Locked,
    LockHeld,
    Member,
    NotWriter,
    PathState,
    Project,
    Store,
    TooManyLocks,
    Usage,
    User,
    VersionRefs,
    deleted_changes,
    find_conflicts,
    locked_changes,
)

POOL_MAX = 10
IDEMPOTENCY_TTL = timedelta(hours=24)
# pg_advisory_xact_lock key: nodes starting together migrate one at a time.
MIGRATION_LOCK = 0x76696473796E63  # "vidsync"


def _ms(ts: datetime) -> datetime:
    return ts.replace(microsecond=ts.microsecond - ts.microsecond % 1000)


def prefix_clause(prefixes: tuple[str, ...], first_arg: int) -> tuple[str, list[str]]:
    """SQL matching paths under any prefix, as index ranges ('a/' <= path < 'a0', '0' being the
    character after '/'), with numbered parameters from ``$first_arg``."""
    if not prefixes:
        return "", []
    parts, args = [], []
    for p in prefixes:
        n = first_arg + len(args)
        parts.append(f"(path >= ${n} AND path < ${n + 1})")
        args += [p, p[:-1] + "0"]
    return " AND (" + " OR ".join(parts) + ")", args


def path_clause(path: str, first_arg: int) -> tuple[str, list[str]]:
    """SQL for one path, or for everything under it if it ends in '/' ('' matches all), with
    numbered parameters from ``$first_arg``."""
    n = first_arg
    if path == "":
        return "", []
    if path.endswith("/"):
        return f" AND path >= ${n} AND path < ${n + 1}", [path, path[:-1] + "0"]
    return f" AND path = ${n}", [path]




def _user(row: asyncpg.Record) -> User:
    return User(row["id"], row["email"], row["name"], row["created_at"])


def _project(row: asyncpg.Record) -> Project:
    return Project(row["id"], row["name"], row["description"], row["owner_id"],
                   row["created_at"], row["last_seq"], row["last_activity_at"])


def _invite(row: asyncpg.Record) -> Invite:
    return Invite(row["code"], row["project_id"], row["created_at"], row["expires_at"],
                  row["max_uses"], row["uses"], row["revoked_at"] is not None, row["role"])


def _author(row: asyncpg.Record) -> Author | None:
    return None if row["author_id"] is None else Author(row["author_id"], row["author_name"] or "")


def _event(project_id: str, r: asyncpg.Record) -> Event:
    return Event(project_id, r["seq"], Change(r["path"], r["op"], r["hash"], r["size"], r["mtime"]),
                 r["created_at"], _author(r))


def _member(r: asyncpg.Record) -> Member:
    return Member(r["user_id"], r["email"], r["name"], r["role"], r["joined_at"])


def _lock(r: asyncpg.Record) -> Lock:
    return Lock(r["project_id"], r["path"], Author(r["user_id"], r["user_name"]),
                r["acquired_at"], r["expires_at"])


async def _path_states(conn: asyncpg.Connection, project_id: str,
                       paths: set[str]) -> dict[str, PathState]:
    """Each path's latest event (one seek each on events_by_path), as the state it left."""
    rows = await conn.fetch(
        "SELECT q.path, e.seq, e.op, e.hash, e.author_id, e.author_name"
        " FROM unnest($2::text[]) AS q(path) LEFT JOIN LATERAL (SELECT * FROM events"
        " WHERE project_id = $1 AND path = q.path ORDER BY seq DESC LIMIT 1) e ON true",
        project_id, sorted(paths))
    return {r["path"]: PathState(None, None, None) if r["seq"] is None else PathState(
        r["hash"] if r["op"] != "delete" else None, r["seq"], _author(r)) for r in rows}


def _final_states(events: Sequence[Event]) -> tuple[list[str], list[Event]]:
    """The files table's changes for a batch: the last event per path wins (one batch may touch a
    path twice, and one upsert statement may not change a row twice)."""
    last: dict[str, Event] = {}
    for e in events:
        last[e.change.path] = e
    deleted = [p for p, e in last.items() if e.change.op == "delete"]
    kept = [e for e in last.values() if e.change.op != "delete"]
    return deleted, kept


class PostgresStore(Store):
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @classmethod
    async def open(cls, url: str, max_size: int = POOL_MAX) -> PostgresStore:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=max_size)
        store = cls(pool)
        try:
            async with pool.acquire() as conn:
                await cls._migrate(conn)
        except BaseException:
            await pool.close()
            raise
        return store

    @staticmethod
    async def _migrate(conn: asyncpg.Connection) -> None:
        known = migrations.load("postgres")
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
                " name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            if done and max(done) > len(known):
                raise RuntimeError(f"database schema v{max(done)} is newer than this vidsync")
            for mig in known:
                if mig.version not in done:
                    await conn.execute(mig.sql)
                    await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                                       mig.version, mig.name)

    async def close(self) -> None:
        await self.pool.close()

    # -- accounts -------------------------------------------------------------------------------

    async def create_user(self, email: str, name: str, password_hash: str) -> User | None:
        user = User(str(uuid.uuid4()), email, name, _ms(datetime.now(UTC)))
        try:
            await self.pool.execute("INSERT INTO users VALUES ($1, $2, $3, $4, $5)",
                                    user.id, email, name, password_hash, user.created_at)
        except asyncpg.UniqueViolationError:
            return None
        return user

    async def user_by_email(self, email: str) -> tuple[User, str] | None:
        row = await self.pool.fetchrow("SELECT * FROM users WHERE lower(email) = lower($1)", email)
        return None if row is None else (_user(row), row["password_hash"])

    async def set_password_hash(self, user_id: str, password_hash: str) -> None:
        await self.pool.execute("UPDATE users SET password_hash = $1 WHERE id = $2",
                                password_hash, user_id)

    async def create_token(self, user_id: str, token_hash: str, expires_at: datetime) -> None:
        await self.pool.execute("INSERT INTO tokens VALUES ($1, $2, $3, $4, NULL)",
                                token_hash, user_id, _ms(datetime.now(UTC)), _ms(expires_at))

    async def user_by_token(self, token_hash: str, now: datetime) -> User | None:
        row = await self.pool.fetchrow(
            "SELECT u.* FROM tokens t JOIN users u ON u.id = t.user_id"
            " WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND t.expires_at > $2",
            token_hash, now)
        return None if row is None else _user(row)

    async def revoke_token(self, token_hash: str) -> None:
        await self.pool.execute(
            "UPDATE tokens SET revoked_at = $1 WHERE token_hash = $2 AND revoked_at IS NULL",
            _ms(datetime.now(UTC)), token_hash)

    # -- projects -------------------------------------------------------------------------------

    async def create_project(self, project_id: str, owner_id: str, name: str,
                             description: str, now: datetime) -> Project:
        now = _ms(now)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("INSERT INTO projects (id, owner_id, name, description, created_at)"
                               " VALUES ($1, $2, $3, $4, $5)",
                               project_id, owner_id, name, description, now)
            await conn.execute("INSERT INTO members VALUES ($1, $2, 'owner', $3)",
                               project_id, owner_id, now)
        return Project(project_id, name, description, owner_id, now)

    async def get_project(self, project_id: str) -> Project | None:
        row = await self.pool.fetchrow("SELECT * FROM projects WHERE id = $1", project_id)
        return None if row is None else _project(row)

    async def projects_for_user(self, user_id: str) -> list[tuple[Project, str, int]]:
        rows = await self.pool.fetch(
            "SELECT p.*, m.role,"
            " (SELECT COUNT(*) FROM members m2 WHERE m2.project_id = p.id) AS member_count"
            " FROM members m JOIN projects p ON p.id = m.project_id"
            " WHERE m.user_id = $1 ORDER BY p.created_at, p.id", user_id)
        return [(_project(r), r["role"], r["member_count"]) for r in rows]

    async def update_project(self, project_id: str, name: str | None,
                             description: str | None) -> Project | None:
        row = await self.pool.fetchrow(
            "UPDATE projects SET name = COALESCE($2, name), description = COALESCE($3, description)"
            " WHERE id = $1 RETURNING *", project_id, name, description)
        return None if row is None else _project(row)

    async def delete_project(self, project_id: str) -> bool:
        return await self.pool.execute("DELETE FROM projects WHERE id = $1", project_id) != "DELETE 0"

    async def role_of(self, project_id: str, user_id: str) -> str | None:
        return await self.pool.fetchval(
            "SELECT role FROM members WHERE project_id = $1 AND user_id = $2", project_id, user_id)

    async def members(self, project_id: str) -> list[Member]:
        rows = await self.pool.fetch(
            "SELECT m.user_id, u.email, u.name, m.role, m.joined_at FROM members m"
            " JOIN users u ON u.id = m.user_id WHERE m.project_id = $1"
            " ORDER BY m.role <> 'owner', m.joined_at", project_id)
        return [_member(r) for r in rows]

    async def set_member_role(self, project_id: str, user_id: str, role: str) -> Member | None:
        async with self.pool.acquire() as conn, conn.transaction():
            # The project's row lock, which append_events takes too: a post that commits after
            # this reads the new role (it reads roles only once it holds the lock).
            await conn.execute("SELECT 1 FROM projects WHERE id = $1 FOR UPDATE", project_id)
            row = await conn.fetchrow(
                "UPDATE members m SET role = $3 FROM users u WHERE m.project_id = $1"
                " AND m.user_id = $2 AND m.role <> 'owner' AND u.id = m.user_id"
                " RETURNING m.user_id, u.email, u.name, m.role, m.joined_at",
                project_id, user_id, role)
        return None if row is None else _member(row)

    async def remove_member(self, project_id: str, user_id: str) -> bool:
        status = await self.pool.execute(
            "DELETE FROM members WHERE project_id = $1 AND user_id = $2 AND role <> 'owner'",
            project_id, user_id)
        return status != "DELETE 0"

    async def create_invite(self, code: str, project_id: str, created_by: str, now: datetime,
                            expires_at: datetime, max_uses: int | None,
                            role: str = "viewer") -> Invite:
        row = await self.pool.fetchrow(
            "INSERT INTO invites (code, project_id, created_by, created_at, expires_at, max_uses,"
            " uses, revoked_at, role) VALUES ($1, $2, $3, $4, $5, $6, 0, NULL, $7) RETURNING *",
            code, project_id, created_by, _ms(now), _ms(expires_at), max_uses, role)
        return _invite(row)

    async def invites(self, project_id: str, now: datetime) -> list[Invite]:
        rows = await self.pool.fetch(
            "SELECT * FROM invites WHERE project_id = $1 AND revoked_at IS NULL"
            " AND expires_at > $2 AND (max_uses IS NULL OR uses < max_uses)"
            " ORDER BY created_at", project_id, now)
        return [_invite(r) for r in rows]

    async def revoke_invite(self, project_id: str, code: str) -> bool:
        status = await self.pool.execute(
            "UPDATE invites SET revoked_at = $1 WHERE code = $2 AND project_id = $3"
            " AND revoked_at IS NULL", _ms(datetime.now(UTC)), code, project_id)
        return status != "UPDATE 0"

    async def redeem_invite(self, code: str, user_id: str, now: datetime) -> tuple[Project, str]:
        async with self.pool.acquire() as conn, conn.transaction():
            # The row lock makes concurrent redemptions take turns, so max_uses holds.
            inv = await conn.fetchrow("SELECT * FROM invites WHERE code = $1 FOR UPDATE", code)
            if inv is None:
                raise InviteError("unknown")
            project = _project(await conn.fetchrow("SELECT * FROM projects WHERE id = $1",
                                                   inv["project_id"]))
            role = await conn.fetchval(
                "SELECT role FROM members WHERE project_id = $1 AND user_id = $2", project.id, user_id)
            if inv["revoked_at"] is not None:
                raise InviteError("revoked")
            if inv["expires_at"] <= now:
                raise InviteError("expired")
            if role is not None:
                return project, role
            if inv["max_uses"] is not None and inv["uses"] >= inv["max_uses"]:
                raise InviteError("used_up")
            # Another invite of the same project may have let this user in meanwhile.
            inserted = await conn.fetchval(
                "INSERT INTO members VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING"
                " RETURNING role", project.id, user_id, inv["role"], _ms(now))
            if inserted is None:
                return project, await conn.fetchval(
                    "SELECT role FROM members WHERE project_id = $1 AND user_id = $2",
                    project.id, user_id)
            await conn.execute("UPDATE invites SET uses = uses + 1 WHERE code = $1", code)
            return project, inserted

    # -- the event log ----------------------------------------------------------------------------

    async def append_events(self, project_id: str, changes: list[Change], now: datetime,
                            idempotency_key: str | None, request_digest: str, *,
                            author: Author, bases: dict[int, str | None] | None = None,
                            ) -> AppendResult:
        created = _ms(now)
        async with self.pool.acquire() as conn, conn.transaction():
            if idempotency_key is not None:
                # Lock the project first: a retry racing its original then sees the first
                # response once that commits, instead of appending twice.
                if await conn.fetchval("SELECT 1 FROM projects WHERE id = $1 FOR UPDATE",
                                       project_id) is None:
                    raise not_found("no such project")
                await conn.execute("DELETE FROM idempotency WHERE project_id = $1 AND created_at < $2",
                                   project_id, created - IDEMPOTENCY_TTL)
                row = await conn.fetchrow(
                    "SELECT request_digest, response FROM idempotency"
                    " WHERE project_id = $1 AND key = $2", project_id, idempotency_key)
                if row is not None:
                    if row["request_digest"] != request_digest:
                        raise IdempotencyMismatch()
                    response = json.loads(row["response"])
                    return AppendResult([], response["last_seq"], response, replayed=True)
            n = len(changes)
            last_seq = await conn.fetchval(
                "UPDATE projects SET last_seq = last_seq + $1, last_activity_at = $2"
                " WHERE id = $3 RETURNING last_seq", n, created, project_id)
            if last_seq is None:  # deleted between the role check and now
                raise not_found("no such project")
            # Read only now that this transaction holds the project's row lock (taken by the
            # update above, rolled back with it on a refusal): each statement reads what was
            # committed before it began, so a role change or another post cannot slip in
            # between these checks and the append.
            role = await conn.fetchval(
                "SELECT role FROM members WHERE project_id = $1 AND user_id = $2",
                project_id, author.id)
            if role is None:
                raise not_found("no such project, or you are not a member")
            if role not in WRITER_ROLES:
                raise NotWriter()
            rows = await conn.fetch(
                "SELECT * FROM locks WHERE project_id = $1 AND user_id <> $2 AND expires_at > $3"
                " AND path = ANY($4::text[])", project_id, author.id, created,
                list({c.path for c in changes}))
            locked = locked_changes(changes, {r["path"]: _lock(r) for r in rows})
            if locked:
                raise Locked(locked)
            if bases:
                current = await _path_states(conn, project_id, {changes[i].path for i in bases})
                conflicts = find_conflicts(changes, bases, current)
                if conflicts:
                    raise Conflict(conflicts)
            first = last_seq - n + 1
            events = [Event(project_id, first + i, c, created, author)
                      for i, c in enumerate(changes)]
            await conn.execute(
                "INSERT INTO events (project_id, seq, path, op, hash, size, mtime, created_at,"
                " author_id, author_name)"
                " SELECT $1, t.* , $8, $9, $10 FROM unnest($2::bigint[], $3::text[], $4::text[],"
                " $5::text[], $6::bigint[], $7::bigint[]) AS t",
                project_id, [e.seq for e in events], [c.path for c in changes],
                [c.op for c in changes], [c.hash for c in changes], [c.size for c in changes],
                [c.mtime for c in changes], created, author.id, author.name)
            gone, back = deleted_changes(events)
            if back:
                await conn.execute("DELETE FROM deleted_files WHERE project_id = $1"
                                   " AND path = ANY($2::text[])", project_id, back)
            if gone:  # before the files table changes: its rows give the versions before
                await conn.execute(
                    "INSERT INTO deleted_files SELECT $1, t.path, t.seq, COALESCE(t.version,"
                    " f.seq, d.version_seq) FROM unnest($2::text[], $3::bigint[], $4::bigint[])"
                    " AS t(path, seq, version)"
                    " LEFT JOIN files f ON f.project_id = $1 AND f.path = t.path"
                    " LEFT JOIN deleted_files d ON d.project_id = $1 AND d.path = t.path"
                    " WHERE COALESCE(t.version, f.seq, d.version_seq) IS NOT NULL"
                    " ON CONFLICT (project_id, path) DO UPDATE SET"
                    " deleted_seq = excluded.deleted_seq, version_seq = excluded.version_seq",
                    project_id, [p for p, _, _ in gone], [seq for _, seq, _ in gone],
                    [version for _, _, version in gone])
            deleted, kept = _final_states(events)
            if deleted:
                await conn.execute("DELETE FROM files WHERE project_id = $1 AND path = ANY($2::text[])",
                                   project_id, deleted)
            if kept:
                await conn.execute(
                    "INSERT INTO files (project_id, path, hash, size, mtime, seq)"
                    " SELECT $1, t.* FROM unnest($2::text[], $3::text[], $4::bigint[], $5::bigint[],"
                    " $6::bigint[]) AS t ON CONFLICT (project_id, path) DO UPDATE SET"
                    " hash = excluded.hash, size = excluded.size, mtime = excluded.mtime,"
                    " seq = excluded.seq",
                    project_id, [e.change.path for e in kept], [e.change.hash for e in kept],
                    [e.change.size for e in kept], [e.change.mtime for e in kept],
                    [e.seq for e in kept])
            response = {
                "results": [{"path": c.path, "op": c.op, "seq": e.seq}
                            for e, c in zip(events, changes, strict=True)],
                "last_seq": last_seq,
            }
            if idempotency_key is not None:
                await conn.execute("INSERT INTO idempotency VALUES ($1, $2, $3, $4, $5)",
                                   project_id, idempotency_key, request_digest,
                                   json.dumps(response), created)
        return AppendResult(events, last_seq, response)

    # -- file locks ---------------------------------------------------------------------------------

    async def acquire_lock(self, project_id: str, path: str, user: Author, now: datetime,
                           expires_at: datetime, max_locks: int) -> tuple[Lock, bool]:
        now, expires_at = _ms(now), _ms(expires_at)
        async with self.pool.acquire() as conn, conn.transaction():
            # The project's row lock, as append_events takes it: a post that commits after this
            # sees the lock.
            await conn.execute("SELECT 1 FROM projects WHERE id = $1 FOR UPDATE", project_id)
            row = await conn.fetchrow("SELECT * FROM locks WHERE project_id = $1 AND path = $2",
                                      project_id, path)
            live = row is not None and row["expires_at"] > now
            if live and row["user_id"] != user.id:
                raise LockHeld(_lock(row))
            if live:  # the holder again: a renewal
                row = await conn.fetchrow(
                    "UPDATE locks SET expires_at = GREATEST(expires_at, $3), user_name = $4"
                    " WHERE project_id = $1 AND path = $2 RETURNING *",
                    project_id, path, expires_at, user.name)
                return _lock(row), False
            count = await conn.fetchval("SELECT COUNT(*) FROM locks WHERE project_id = $1"
                                        " AND expires_at > $2", project_id, now)
            if count >= max_locks:
                raise TooManyLocks()
            row = await conn.fetchrow(
                "INSERT INTO locks VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (project_id, path)"
                " DO UPDATE SET user_id = excluded.user_id, user_name = excluded.user_name,"
                " acquired_at = excluded.acquired_at, expires_at = excluded.expires_at"
                " RETURNING *", project_id, path, user.id, user.name, now, expires_at)
            return _lock(row), True

    async def release_lock(self, project_id: str, path: str, user_id: str, may_break: bool,
                           now: datetime) -> Lock | None:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow("SELECT * FROM locks WHERE project_id = $1 AND path = $2"
                                      " AND expires_at > $3 FOR UPDATE", project_id, path, now)
            if row is None:
                return None
            if row["user_id"] != user_id and not may_break:
                raise LockHeld(_lock(row))
            await conn.execute("DELETE FROM locks WHERE project_id = $1 AND path = $2",
                               project_id, path)
            return _lock(row)

    async def locks(self, project_id: str, now: datetime) -> list[Lock]:
        rows = await self.pool.fetch("SELECT * FROM locks WHERE project_id = $1"
                                     " AND expires_at > $2 ORDER BY path", project_id, now)
        return [_lock(r) for r in rows]

    async def renew_locks(self, holders: set[tuple[str, str]], expires_at: datetime,
                          now: datetime) -> int:
        if not holders:
            return 0
        pairs = sorted(holders)
        status = await self.pool.execute(
            "UPDATE locks l SET expires_at = $3 FROM unnest($1::text[], $2::text[]) AS h(p, u)"
            " WHERE l.project_id = h.p AND l.user_id = h.u AND l.expires_at > $4"
            " AND l.expires_at < $3", [p for p, _ in pairs], [u for _, u in pairs],
            _ms(expires_at), now)
        return int(status.split()[-1])

    async def expire_locks(self, now: datetime) -> list[Lock]:
        rows = await self.pool.fetch("DELETE FROM locks WHERE expires_at <= $1 RETURNING *", now)
        return [_lock(r) for r in rows]

    async def release_member_locks(self, project_id: str, user_id: str) -> list[Lock]:
        rows = await self.pool.fetch("DELETE FROM locks WHERE project_id = $1 AND user_id = $2"
                                     " RETURNING *", project_id, user_id)
        return [_lock(r) for r in rows]

    async def events_since(self, project_id: str, since_seq: int, limit: int,
                           prefixes: tuple[str, ...] = ()) -> tuple[list[Event], int, bool]:
        where, args = prefix_clause(prefixes, 4)
        rows = await self.pool.fetch(
            "SELECT p.last_seq, e.seq, e.path, e.op, e.hash, e.size, e.mtime, e.created_at,"
            " e.author_id, e.author_name"
            " FROM projects p LEFT JOIN LATERAL (SELECT * FROM events"
            f" WHERE project_id = p.id AND seq > $2{where} ORDER BY seq LIMIT $3) e ON true"
            " WHERE p.id = $1 ORDER BY e.seq", project_id, since_seq, limit + 1, *args)
        if not rows:
            return [], 0, False
        events = [_event(project_id, r) for r in rows if r["seq"] is not None]
        return events[:limit], rows[0]["last_seq"], len(events) > limit

    async def last_seq(self, project_id: str) -> int:
        value = await self.pool.fetchval("SELECT last_seq FROM projects WHERE id = $1", project_id)
        return value or 0

    async def files(self, project_id: str,
                    prefixes: tuple[str, ...] = ()) -> tuple[list[FileEntry], int]:
        where, args = prefix_clause(prefixes, 2)
        rows = await self.pool.fetch(
            "SELECT p.last_seq, f.path, f.hash, f.size, f.mtime, f.seq"
            " FROM projects p LEFT JOIN LATERAL (SELECT * FROM files"
            f" WHERE project_id = p.id{where}) f ON true WHERE p.id = $1 ORDER BY f.path",
            project_id, *args)
        if not rows:
            return [], 0
        files = [FileEntry(r["path"], r["hash"], r["size"], r["mtime"], r["seq"])
                 for r in rows if r["path"] is not None]
        return files, rows[0]["last_seq"]

    async def folder(self, project_id: str, folder: str, prefixes: tuple[str, ...] = ()
                     ) -> tuple[list[FileEntry], list[FolderEntry], int]:
        where, args = path_clause(folder, 4)
        pwhere, pargs = prefix_clause(prefixes, 4 + len(args))
        # Where the next '/' is after the folder's own path: 0 for a file directly in it.
        slash = "strpos(substr(path, $2), '/')"
        # One statement, so the files, the folders' totals and last_seq are one snapshot.
        rows = await self.pool.fetch(
            "SELECT p.last_seq, x.* FROM projects p LEFT JOIN LATERAL ("
            " SELECT false AS is_folder, path, hash, size, mtime, seq, 1::bigint AS n FROM files"
            f"  WHERE project_id = p.id{where}{pwhere} AND {slash} = 0"
            f" UNION ALL SELECT true, left(path, $3 + {slash}), NULL, sum(size)::bigint,"
            "  max(mtime), max(seq), count(*) FROM files"
            f"  WHERE project_id = p.id{where}{pwhere} AND {slash} > 0 GROUP BY 2"
            ") x ON true WHERE p.id = $1 ORDER BY x.is_folder, x.path",
            project_id, len(folder) + 1, len(folder), *args, *pargs)
        if not rows:
            return [], [], 0
        files = [FileEntry(r["path"], r["hash"], r["size"], r["mtime"], r["seq"])
                 for r in rows if r["path"] is not None and not r["is_folder"]]
        folders = [FolderEntry(r["path"], r["n"], r["size"], r["mtime"])
                   for r in rows if r["is_folder"]]
        return files, folders, rows[0]["last_seq"]

    # -- version history --------------------------------------------------------------------------

    async def history(self, project_id: str, path: str, before_seq: int,
                      limit: int) -> list[Event]:
        where, args = path_clause(path, 4)
        rows = await self.pool.fetch(
            f"SELECT * FROM events WHERE project_id = $1 AND seq < $2{where}"
            " ORDER BY seq DESC LIMIT $3", project_id, before_seq, limit, *args)
        return [_event(project_id, r) for r in rows]

    async def deleted_files(self, project_id: str, prefix: str, after_path: str,
                            limit: int) -> list[DeletedFile]:
        where, args = path_clause(prefix, 4)
        rows = await self.pool.fetch(
            "SELECT f.path AS deleted_path, f.deleted_seq, d.created_at AS deleted_at,"
            " v.seq, v.path, v.op, v.hash, v.size, v.mtime, v.created_at, v.author_id,"
            " v.author_name"
            " FROM (SELECT path, deleted_seq, version_seq FROM deleted_files"
            f"       WHERE project_id = $1 AND path > $2{where} ORDER BY path LIMIT $3) f"
            " JOIN events d ON d.project_id = $1 AND d.seq = f.deleted_seq"
            " JOIN events v ON v.project_id = $1 AND v.seq = f.version_seq"
            " ORDER BY f.path", project_id, after_path, limit, *args)
        return [DeletedFile(r["deleted_path"], r["deleted_seq"], r["deleted_at"],
                            _event(project_id, r)) for r in rows]

    async def files_as_of(self, project_id: str, prefix: str, seq: int) -> list[FileEntry]:
        where, args = path_clause(prefix, 3)
        rows = await self.pool.fetch(
            "SELECT e.path, e.hash, e.size, e.mtime, e.seq FROM (SELECT MAX(seq) AS seq"
            f" FROM events WHERE project_id = $1 AND seq <= $2{where} GROUP BY path) last"
            " JOIN events e ON e.project_id = $1 AND e.seq = last.seq"
            " WHERE e.op != 'delete' ORDER BY e.path", project_id, seq, *args)
        return [FileEntry(r["path"], r["hash"], r["size"], r["mtime"], r["seq"]) for r in rows]

    async def version_refs(self, project_id: str, cutoff: datetime) -> VersionRefs:
        # Each content event with the time of the next event on its path (none: live),
        # made distinct in SQL: a hash per version would be a Python row each.
        rows = await self.pool.fetch(
            "SELECT DISTINCT hash, replaced_at IS NULL AS live FROM (SELECT hash, LEAD(created_at)"
            " OVER (PARTITION BY path ORDER BY seq) AS replaced_at FROM events"
            " WHERE project_id = $1) e WHERE hash IS NOT NULL"
            " AND (replaced_at IS NULL OR replaced_at > $2)", project_id, cutoff)
        live = {r["hash"] for r in rows if r["live"]}
        return VersionRefs(frozenset(live),
                           frozenset(r["hash"] for r in rows if not r["live"]) - live)

    # -- storage usage ------------------------------------------------------------------------------

    async def save_usage(self, project_id: str, usage: Usage) -> None:
        await self.pool.execute(
            "INSERT INTO project_usage SELECT $1, $2, $3, $4, $5, $6, $7"
            " WHERE EXISTS (SELECT 1 FROM projects WHERE id = $1)"
            f" ON CONFLICT (project_id) DO UPDATE SET {USAGE_SET}"
            " WHERE excluded.counted_at >= project_usage.counted_at",
            project_id, *astuple(usage))

    async def usage(self, project_id: str) -> Usage | None:
        row = await self.pool.fetchrow(
            f"SELECT {USAGE_COLUMNS} FROM project_usage WHERE project_id = $1", project_id)
        return None if row is None else Usage(*row)

    async def project_ids(self) -> list[str]:
        return [r["id"] for r in await self.pool.fetch("SELECT id FROM projects")]
