"""The Redis backplane: what one node commits or decides reaches every other node's subscribers.

Each node publishes, on one Redis pub/sub channel, every batch it commits (a compact JSON message)
and every action other nodes must repeat (ending a member's subscriptions, logging a token out).
Each node hands other nodes' batches to ``Services.deliver``, whose hub orders them per project,
drops duplicates and fills seq holes from the database.

Redis pub/sub is at-most-once: a message is lost when Redis restarts, when a subscription drops,
or when a publish fails. The database is the truth, so a loss only has to be noticed:

- every message carries its node's message number, and every node publishes a heartbeat with its
  latest number each ``HEARTBEAT_S``: a number skipped, even by the last message before a quiet
  spell, shows within a heartbeat;
- every (re)subscription, and every heartbeat that fails to arrive in time, counts as a loss too:
  a node that dies between a commit and its publish goes silent, and the others then look.

On a loss the node re-reads, for every project it has subscribers for, the log past what it
delivered (``resync``) and the locks (sent again as ``project:locks``), and re-checks its sockets'
tokens and memberships, since a lost control message must not leave a logged-out user or a
removed member listening.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson
import redis.asyncio as redis
from aiohttp import web
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from vidsync.changes import Change
from vidsync.store import Event
from vidsync.store.base import Author, utcnow

if TYPE_CHECKING:
    from vidsync.server.app import Services

log = logging.getLogger("vidsync.backplane")

CHANNEL = "vidsync:events"
HEARTBEAT_S = 1.0
# No message at all (our own heartbeats included) for this long: the subscription is dead. No
# message from a peer for this long: it stopped, maybe with its last commits unannounced.
SILENCE_S = 3.5
# A batch whose message would be bigger is announced by seq range; nodes read it from the store.
MAX_INLINE_BYTES = 1024 * 1024
# Messages waiting to be published; past this they are dropped (and their loss noticed by peers).
MAX_QUEUE = 10_000
RESYNC_PAGE = 500
RECONNECT_MAX_S = 2.0
# On shutdown, how long queued messages may take to go out.
FLUSH_S = 2.0
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ms(ts: datetime) -> int:
    return (ts - EPOCH) // timedelta(milliseconds=1)


def encode_events(events: list[Event]) -> list[list[Any]]:
    return [[e.seq, e.change.path, e.change.op, e.change.hash, e.change.size, e.change.mtime,
             _ms(e.created_at), *((e.author.id, e.author.name) if e.author else ())]
            for e in events]


def decode_events(project_id: str, rows: list[list[Any]]) -> list[Event]:
    """Rows as ``encode_events`` makes them (a node of an earlier release sends no author)."""
    return [Event(project_id, seq, Change(path, op, digest, size, mtime),
                  EPOCH + timedelta(milliseconds=created),
                  Author(*author) if len(author) == 2 else None)
            for seq, path, op, digest, size, mtime, created, *author in rows]


class RedisBackplane:
    """One node's link to the others. ``install`` wires it into the app's startup and cleanup."""

    def __init__(self, url: str, svc: Services) -> None:
        self.svc = svc
        self.node_id = uuid.uuid4().hex[:12]
        # The subscription gets no retries inside redis-py: a dropped connection must surface
        # here, where it counts as a possible loss, rather than be re-established silently. A
        # publish may be retried once on a fresh connection (after a Redis restart the pooled one
        # is stale): a message published twice is harmless, the hub drops duplicates.
        self._pub = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 1), socket_timeout=5.0,
                                         socket_connect_timeout=2.0)
        self._sub = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), socket_connect_timeout=2.0)
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(MAX_QUEUE)
        self._msg_no = 0
        self._peers: dict[str, tuple[int, float]] = {}  # node -> (last message number, heard at)
        self._tasks: list[asyncio.Task] = []
        self._resync_task: asyncio.Task | None = None
        self._resync_wanted = False
        # Health and counters (read by /readyz and /metrics).
        self.subscribed = False
        self._ever_subscribed = False
        self.publish_failing = False
        self.last_message_at = 0.0
        self.published = 0
        self.publish_errors = 0
        self.dropped = 0
        self.received = 0
        self.gaps = 0
        self.resyncs = 0
        self.events_refilled = 0

    # -- lifecycle ----------------------------------------------------------------------------------

    def install(self, app: web.Application) -> None:
        self.svc.on_commit.append(self.publish_batch)
        self.svc.on_control.append(self.publish_control)

        async def start(app: web.Application) -> None:
            self.start()

        async def stop(app: web.Application) -> None:
            await self.stop()

        app.on_startup.append(start)
        # At cleanup, after the last requests finished: their commits are announced before the
        # store closes.
        app.on_cleanup.insert(0, stop)

    def start(self) -> None:
        self._tasks = [asyncio.ensure_future(self._publish_loop()),
                       asyncio.ensure_future(self._listen()),
                       asyncio.ensure_future(self._heartbeat_loop())]

    async def stop(self) -> None:
        if not self._tasks:  # never started
            return
        publisher, *others = self._tasks
        others += [self._resync_task] if self._resync_task else []
        await _cancel(others)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), FLUSH_S)
        await _cancel([publisher])
        await self._pub.aclose()
        await self._sub.aclose()

    def health(self) -> dict:
        age = time.monotonic() - self.last_message_at if self.last_message_at else None
        return {"ok": self.subscribed and not self.publish_failing and age is not None
                and age < SILENCE_S,
                "subscribed": self.subscribed,
                "last_message_age_s": None if age is None else round(age, 3),
                "queued": self._queue.qsize(), "publish_errors": self.publish_errors,
                "gaps": self.gaps, "resyncs": self.resyncs,
                "events_refilled": self.events_refilled}

    # -- publishing ---------------------------------------------------------------------------------

    def publish_batch(self, project_id: str, events: list[Event]) -> None:
        """``Services.on_commit`` hook: announce a committed batch to the other nodes."""
        message = {"k": "e", "p": project_id, "t": time.time(), "e": encode_events(events)}
        data = orjson.dumps(message)
        if len(data) > MAX_INLINE_BYTES:
            message = {"k": "s", "p": project_id, "l": events[-1].seq}
        self._enqueue(message)

    def publish_control(self, kind: str, args: dict) -> None:
        """``Services.on_control`` hook: an action every node must repeat."""
        self._enqueue({"k": kind, "a": args})

    def _enqueue(self, message: dict, numbered: bool = True) -> None:
        if numbered:
            self._msg_no += 1
        data = orjson.dumps({"n": self.node_id, "i": self._msg_no, **message})
        try:
            self._queue.put_nowait(data)
        except asyncio.QueueFull:
            self.dropped += 1  # its number is skipped: peers will notice and resync

    async def _publish_loop(self) -> None:
        while True:
            data = await self._queue.get()
            try:
                await self._pub.publish(CHANNEL, data)
            except (redis.RedisError, OSError) as e:
                self.publish_errors += 1
                if not self.publish_failing:
                    log.warning("backplane: publish failed (%s); peers will refill from the store", e)
                self.publish_failing = True
                continue
            finally:
                self._queue.task_done()
            self.published += 1
            if self.publish_failing:
                log.info("backplane: publishing again")
                self.publish_failing = False

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            self._enqueue({"k": "hb"}, numbered=False)

    # -- receiving ----------------------------------------------------------------------------------

    async def _listen(self) -> None:
        backoff = 0.1
        while True:
            pubsub = self._sub.pubsub()
            try:
                await pubsub.subscribe(CHANNEL)
                while True:
                    msg = await pubsub.get_message(timeout=HEARTBEAT_S)
                    now = time.monotonic()
                    self._check_peers(now)
                    if msg is None:
                        if self.subscribed and now - self.last_message_at > SILENCE_S:
                            raise redis.ConnectionError("no message, not even a heartbeat")
                        continue
                    self.last_message_at = now
                    if msg["type"] == "subscribe":
                        log.info("backplane: subscribed")
                        # Whatever was published while this node was not subscribed is lost (the
                        # first time too: clients may have subscribed before Redis was reachable).
                        self._loss("resubscribed" if self._ever_subscribed else "subscribed",
                                   counted=self._ever_subscribed)
                        self.subscribed = self._ever_subscribed = True
                        self._peers.clear()  # not heard while away: not silent
                        backoff = 0.1
                    elif msg["type"] == "message":
                        self._on_message(msg["data"])
            except (redis.RedisError, OSError) as e:
                if self.subscribed:
                    log.warning("backplane: subscription lost (%s)", e)
                self.subscribed = False
            finally:
                with contextlib.suppress(redis.RedisError, OSError):
                    await pubsub.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, RECONNECT_MAX_S)

    def _on_message(self, data: bytes) -> None:
        try:
            msg = orjson.loads(data)
            node, number, kind = msg["n"], msg["i"], msg["k"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("backplane: ignoring a malformed message")
            return
        if node == self.node_id:
            return  # ours: delivered locally already
        self.received += 1
        self._check_sequence(node, number, kind == "hb")
        try:
            self._apply(kind, msg)
        except Exception:  # one bad message must not end the subscription loop
            log.exception("backplane: could not apply a %r message from node %s", kind, node)

    def _check_sequence(self, node: str, number: int, heartbeat: bool) -> None:
        now = time.monotonic()
        last, _ = self._peers.get(node, (0, now))
        # A heartbeat repeats the node's latest number; any other message takes the next one.
        expected = last if heartbeat else last + 1
        if number > expected:
            self._loss(f"message lost? node {node} sent number {number}, {expected} was next")
        self._peers[node] = (max(last, number), now)

    def _check_peers(self, now: float) -> None:
        for peer, (_, heard) in list(self._peers.items()):
            if now - heard > SILENCE_S:
                del self._peers[peer]  # if it comes back, its next number shows as a gap
                self._loss(f"node {peer} went silent")

    def _apply(self, kind: str, msg: dict) -> None:
        svc = self.svc
        if kind == "e":
            lag = max(0.0, time.time() - msg["t"])  # wall clocks: commit on another machine
            svc.deliver(msg["p"], decode_events(msg["p"], msg["e"]), time.monotonic() - lag)
        elif kind == "s":
            svc.waiters.wake(msg["p"])
            position = svc.hub.positions().get(msg["p"])
            if position is not None and position < msg["l"]:
                self._spawn(self._catch_up(msg["p"], position, lost=False))
        elif kind == "end_subscriptions":
            a = msg["a"]
            svc.hub.end_subscriptions(a["project_id"], a["reason"], a.get("user_id"))
        elif kind == "announce":
            a = msg["a"]
            svc.hub.notify(a["project_id"], a["name"], a["payload"], path=a["path"])
        elif kind == "disconnect_token":
            svc.realtime.disconnect_token(msg["a"]["token_hash"])
        elif kind == "role_changed":
            a = msg["a"]
            svc.hub.notify(a["project_id"], "project:role", a, a["user_id"])
        elif kind == "lock_changed":
            svc.hub.notify(msg["a"]["project_id"], "project:lock", msg["a"])
        # "hb" needs nothing more; an unknown kind comes from a newer node: ignore it

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.append(task)
        task.add_done_callback(self._tasks.remove)

    # -- recovering from a loss ---------------------------------------------------------------------

    def _loss(self, why: str, counted: bool = True) -> None:
        self.gaps += counted
        log.info("backplane: %s: resyncing from the store", why)
        self._resync_wanted = True
        if self._resync_task is None or self._resync_task.done():
            self._resync_task = asyncio.ensure_future(self._resync_loop())

    async def _resync_loop(self) -> None:
        while self._resync_wanted:
            self._resync_wanted = False
            try:
                await self.recheck_access()
                await self.resync()
                await self.resend_locks()
            except Exception:
                log.exception("backplane: resync failed; retrying")
                self._resync_wanted = True
                await asyncio.sleep(RECONNECT_MAX_S)

    async def resync(self) -> int:
        """Deliver what the log holds past each channel's position; returns how many events that
        was (the ones a lost message would have carried)."""
        self.resyncs += 1
        filled = 0
        for project_id, position in self.svc.hub.positions().items():
            filled += await self._catch_up(project_id, position)
        return filled

    async def _catch_up(self, project_id: str, since: int, lost: bool = True) -> int:
        """Deliver the project's log past ``since``; returns how many events were new here.
        ``lost`` says whether they count as refilled (not so for a batch announced by range)."""
        filled = 0
        while True:
            events, _, has_more = await self.svc.store.events_since(project_id, since, RESYNC_PAGE)
            if events:
                position = self.svc.hub.positions().get(project_id, since)
                filled += sum(1 for e in events if e.seq > position)
                self.svc.deliver(project_id, events, None)
                since = events[-1].seq
            if not has_more:
                break
        if filled and lost:
            log.info("backplane: project %s: %d event(s) refilled from the store", project_id, filled)
            self.events_refilled += filled
        return filled

    async def resend_locks(self) -> None:
        """A lost lock message would leave subscribers with a wrong lock: send each channel the
        project's locks as they are (``project:locks``, as after subscribing)."""
        for project_id in list(self.svc.hub.channels):
            locks = await self.svc.store.locks(project_id, utcnow())
            self.svc.hub.notify(project_id, "project:locks", {
                "project_id": project_id, "locks": [lock.to_json() for lock in locks]})

    async def recheck_access(self) -> None:
        """End what a lost logout or removal message should have ended on this node."""
        store, hub, realtime = self.svc.store, self.svc.hub, self.svc.realtime
        now = utcnow()
        for token_hash in {s.token_hash for s in list(realtime.sessions.values()) if s.token_hash}:
            if await store.user_by_token(token_hash, now) is None:
                realtime.disconnect_token(token_hash)
        for project_id, channel in list(hub.channels.items()):
            if await store.get_project(project_id) is None:
                hub.end_subscriptions(project_id, "project deleted")
                continue
            for user_id in {s.user_id for s in list(channel.subs.values())}:
                if await store.role_of(project_id, user_id) is None:
                    hub.end_subscriptions(project_id, "removed from project", user_id)


async def _cancel(tasks: list[asyncio.Task]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
