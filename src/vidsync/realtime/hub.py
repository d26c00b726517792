"""Project channels: who is subscribed to what, and getting every event to them once, in order.

Events reach the hub from ``publish`` after their transaction committed: from this node's own
writes, or from other nodes through a backplane. Each channel delivers seqs strictly in order. A
publish that skips ahead (another publish still in flight, or a message the backplane lost) is held
while the hole is filled from the store, so a gap is never passed on and a duplicate is dropped.

A new subscription replays from the store first and joins the live stream only once it has caught
up with what the channel delivered; each subscription remembers the last seq it was sent, so an
event that was both replayed and published is sent once. Broadcasting encodes each event once per
kind of subscription (plain, filtered by paths, batched) and writes the same bytes to everyone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from vidsync.changes import matches
from vidsync.errors import ApiError
from vidsync.realtime import protocol
from vidsync.realtime.session import Session
from vidsync.store import Event, Store

log = logging.getLogger("vidsync.realtime")

REPLAY_PAGE = 500
GAP_WAIT_S = 0.05


@dataclass(slots=True, eq=False)
class Subscription:
    session: Session
    project_id: str
    user_id: str
    prefixes: tuple[str, ...]
    batch: bool
    sent_seq: int
    live: bool = False
    # Notices (``notify``) held back until the subscriber got its snapshot of the state they
    # change (``release_notices``); None once released.
    held_notices: list[bytes] | None = None


@dataclass(slots=True, eq=False)
class Channel:
    project_id: str
    subs: dict[Session, Subscription] = field(default_factory=dict)
    # Highest seq delivered live; None until known (first publish or first completed replay).
    last_seq: int | None = None
    held: dict[int, Event] = field(default_factory=dict)
    filling: asyncio.Task | None = None
    # Events accepted for delivery but not yet written, and when the oldest was committed.
    pending: list[list[Event]] = field(default_factory=list)
    pending_since: float | None = None
    # Resolved when the pending events are written; made only when someone waits (``written``).
    flushed: asyncio.Future[None] | None = None


class _Encoded:
    """One flush, encoded lazily once per kind of subscription. Batch subscriptions get one
    ``project:events`` per posted batch, even when several batches are flushed together."""

    __slots__ = ("batches", "project_id", "_cache")

    def __init__(self, project_id: str, batches: list[list[Event]]) -> None:
        self.project_id = project_id
        self.batches = batches
        self._cache: dict[tuple[tuple[str, ...], bool], tuple[bytes, tuple[bytes, ...]]] = {}

    def get(self, prefixes: tuple[str, ...], batch: bool) -> tuple[bytes, tuple[bytes, ...]]:
        key = (prefixes, batch)
        hit = self._cache.get(key)
        if hit is None:
            if batch and len(self.batches) > 1:
                parts = [encode_events(self.project_id, b, prefixes, True) for b in self.batches]
                hit = b"".join(f for f, _ in parts), tuple(p for _, ps in parts for p in ps)
            else:
                events = [e for b in self.batches for e in b]
                hit = encode_events(self.project_id, events, prefixes, batch)
            self._cache[key] = hit
        return hit


def encode_events(project_id: str, events: list[Event], prefixes: tuple[str, ...],
                  batch: bool) -> tuple[bytes, tuple[bytes, ...]]:
    """The packets for ``events`` as one subscription kind sees them, and their WebSocket frames."""
    last_seq = events[-1].seq
    chosen = [e for e in events if matches(e.change.path, prefixes)] if prefixes else events
    if not chosen:
        packets: tuple[bytes, ...] = (protocol.event_packet(
            "project:seq", {"project_id": project_id, "last_seq": last_seq}),)
    elif batch:
        packets = (protocol.event_packet("project:events", {
            "project_id": project_id, "events": [e.to_json() for e in chosen],
            "last_seq": last_seq}),)
    else:
        packets = tuple(protocol.event_packet("project:event", e.to_json()) for e in chosen)
    return b"".join(protocol.ws_text_frame(p) for p in packets), packets


class Hub:
    def __init__(self, store: Store, on_delivered: Callable[[int, float], None] | None = None) -> None:
        self.store = store
        self.channels: dict[str, Channel] = {}
        # Metrics hook: (number of deliveries, seconds from commit to write) per broadcast.
        self.on_delivered = on_delivered

    # -- subscriptions ------------------------------------------------------------------------------

    async def subscribe(self, session: Session, project_id: str, user_id: str,
                        since_seq: int | None, prefixes: tuple[str, ...], batch: bool,
                        authorized: Callable[[], Awaitable[bool]],
                        hold_notices: bool = False) -> int | None:
        """Subscribe, replay what ``since_seq`` missed, go live. Returns the log's last seq at
        the time of the ack, or None if ``authorized`` says no.

        ``authorized`` is asked once the subscription is in the channel (not live yet): a removal
        committed before it answers is seen by it, and one committed after finds the subscription
        to end. Asked any earlier, a member removed meanwhile would stay subscribed.

        With ``hold_notices``, notices for the subscription wait until ``release_notices``."""
        if since_seq is None:
            ch = self.channels.get(project_id)
            old = ch.subs.get(session) if ch is not None else None
            since_seq = old.sent_seq if old else await self.store.last_seq(project_id)
        # Only now, with no await until the subscription is in it, take the channel: one left
        # empty meanwhile (another session unsubscribed) may have been dropped.
        ch = self.channels.get(project_id)
        if ch is None:
            ch = self.channels[project_id] = Channel(project_id)
        sub = Subscription(session, project_id, user_id, prefixes, batch, since_seq,
                           held_notices=[] if hold_notices else None)
        ch.subs[session] = sub
        session.projects.add(project_id)
        if not await authorized():
            if ch.subs.get(session) is sub:
                self.unsubscribe(session, project_id)
            return None
        last_seq = await self._replay(ch, sub)
        return last_seq

    async def _replay(self, ch: Channel, sub: Subscription) -> int:
        while True:
            events, last_seq, has_more = await self.store.events_since(
                ch.project_id, sub.sent_seq, REPLAY_PAGE, sub.prefixes)
            if ch.subs.get(sub.session) is not sub:
                return last_seq  # unsubscribed, removed or disconnected meanwhile
            if sub.sent_seq > last_seq:
                # The client has seen more than the log holds (a restored database, or another
                # server): resuming would silently skip what gets those seqs next.
                self.unsubscribe(sub.session, ch.project_id)
                raise ApiError(409, "since_seq_ahead",
                               f"since_seq {sub.sent_seq} is past the end of the log (last_seq "
                               f"{last_seq}): take a new snapshot", last_seq=last_seq)
            if events:
                _, packets = encode_events(ch.project_id, events, sub.prefixes, sub.batch)
                await sub.session.send_with_backpressure(list(packets))
                sub.sent_seq = max(sub.sent_seq, events[-1].seq)
            if has_more:
                continue
            # This page reached the end of the log as of the read: with a path filter the
            # events in between did not match, so the subscription has seen up to last_seq.
            if sub.prefixes and last_seq > sub.sent_seq:
                sub.sent_seq = last_seq
            if ch.last_seq is None:
                ch.last_seq = last_seq
            if sub.sent_seq >= ch.last_seq:
                # No await between this check and going live: anything delivered from now on
                # has seq > ch.last_seq and reaches the subscription through _deliver.
                sub.live = True
                return max(last_seq, sub.sent_seq)

    def unsubscribe(self, session: Session, project_id: str) -> None:
        ch = self.channels.get(project_id)
        if ch is not None:
            ch.subs.pop(session, None)
            self._maybe_drop(ch)
        session.projects.discard(project_id)

    def drop_session(self, session: Session) -> None:
        for project_id in list(session.projects):
            self.unsubscribe(session, project_id)

    def end_subscriptions(self, project_id: str, reason: str,
                          user_id: str | None = None) -> int:
        """Stop a member's (or, with no user, everyone's) subscriptions to a project now and tell
        them why with ``project:removed``. Returns how many ended."""
        ch = self.channels.get(project_id)
        if ch is None:
            return 0
        ended = [s for s in ch.subs.values() if user_id is None or s.user_id == user_id]
        packet = protocol.event_packet("project:removed",
                                       {"project_id": project_id, "reason": reason})
        for sub in ended:
            self.unsubscribe(sub.session, project_id)
            sub.session.send(packet)
        return len(ended)

    def notify(self, project_id: str, name: str, data: dict, user_id: str | None = None,
               path: str | None = None) -> int:
        """Send one message that is not part of the log (a role or lock change, an upload in
        progress) to the project's live subscribers: only one user's with ``user_id``, only those
        whose ``paths`` filter takes ``path`` with ``path``. Not replayed, not numbered: never an
        event. Returns how many got it."""
        ch = self.channels.get(project_id)
        if ch is None:
            return 0
        packet = protocol.event_packet(name, data)
        sent = 0
        for sub in list(ch.subs.values()):
            if (user_id is None or sub.user_id == user_id) and (
                    path is None or not sub.prefixes or matches(path, sub.prefixes)):
                if sub.held_notices is not None:
                    sub.held_notices.append(packet)
                else:
                    sub.session.send(packet)
                sent += 1
        return sent

    def release_notices(self, session: Session, project_id: str, snapshot: bytes) -> None:
        """Send a subscription its snapshot (read after it joined the channel), then the notices
        held since: a notice newer than the snapshot cannot arrive before it and be undone."""
        ch = self.channels.get(project_id)
        sub = ch.subs.get(session) if ch is not None else None
        if sub is None or sub.held_notices is None:
            return
        held, sub.held_notices = sub.held_notices, None
        for packet in (snapshot, *held):
            session.send(packet)

    def subscribers(self) -> set[tuple[str, str]]:
        """(project id, user id) of every subscription on this node: who is connected where."""
        return {(sub.project_id, sub.user_id) for ch in self.channels.values()
                for sub in ch.subs.values()}

    def positions(self) -> dict[str, int]:
        """Each channel's last delivered seq, where known: what a backplane checks against the
        store after it may have lost messages (``publish`` fills a hole only once a later event
        arrives, so lost last events would otherwise wait for the next post)."""
        return {pid: ch.last_seq for pid, ch in self.channels.items() if ch.last_seq is not None}

    def subscription_count(self) -> int:
        return sum(len(ch.subs) for ch in self.channels.values())

    def _maybe_drop(self, ch: Channel) -> None:
        if not ch.subs and ch.filling is None and self.channels.get(ch.project_id) is ch:
            del self.channels[ch.project_id]

    # -- publishing ---------------------------------------------------------------------------------

    async def written(self, project_id: str) -> None:
        """Return once what was published to the project so far is written to its subscribers'
        sockets (at once if nothing is waiting). The post that committed the events waits here
        before it is answered, as the Node design does: a poster cannot outrun its project's
        fan-out, and its next post does not land in the middle of this one's."""
        ch = self.channels.get(project_id)
        if ch is None or not ch.pending:
            return
        if ch.flushed is None:
            ch.flushed = asyncio.get_running_loop().create_future()
        await asyncio.shield(ch.flushed)

    def publish(self, project_id: str, events: list[Event], committed_at: float | None = None) -> None:
        """Fan out committed events (consecutive seqs, ascending) to the project's subscribers."""
        ch = self.channels.get(project_id)
        if ch is None or not events:
            return
        if ch.last_seq is not None:
            events = [e for e in events if e.seq > ch.last_seq]
            if not events:
                return  # all duplicates
            if events[0].seq != ch.last_seq + 1 or ch.held:
                for e in events:
                    ch.held[e.seq] = e
                self._fill_gap(ch)
                return
        self._deliver(ch, events, committed_at)

    def _fill_gap(self, ch: Channel) -> None:
        if ch.filling is not None:
            return

        async def fill() -> None:
            try:
                await asyncio.sleep(GAP_WAIT_S)  # an in-flight local publish usually lands first
                idle = 0
                while ch.held and ch.last_seq is not None:
                    self._release_held(ch)
                    if not ch.held:
                        break
                    events, _, _ = await self.store.events_since(
                        ch.project_id, ch.last_seq, min(REPLAY_PAGE, min(ch.held) - ch.last_seq))
                    if not events:
                        # The hole is not in the store (yet): a commit still in flight on
                        # another node, or a project deleted meanwhile. Back off, and stop
                        # waiting for a project that is gone.
                        idle += 1
                        if idle % 20 == 0 and await self.store.get_project(ch.project_id) is None:
                            ch.held.clear()
                            break
                        await asyncio.sleep(min(GAP_WAIT_S * idle, 1.0))
                        continue
                    idle = 0
                    log.info("project %s: filled seq gap %d..%d from the store",
                             ch.project_id, events[0].seq, events[-1].seq)
                    for e in events:
                        ch.held.setdefault(e.seq, e)
            finally:
                ch.filling = None
                self._maybe_drop(ch)

        ch.filling = asyncio.ensure_future(fill())

    def _release_held(self, ch: Channel) -> None:
        """Deliver the held events that now follow on without a hole."""
        assert ch.last_seq is not None
        run = []
        for stale in [s for s in ch.held if s <= ch.last_seq]:
            del ch.held[stale]
        while (nxt := ch.held.pop(ch.last_seq + 1 + len(run), None)) is not None:
            run.append(nxt)
        if run:
            self._deliver(ch, run, None)

    def _deliver(self, ch: Channel, events: list[Event], committed_at: float | None) -> None:
        """Accept events for delivery now; write them on the next turn of the event loop.

        Every publish that lands before that turn is written in the same pass: one write per
        subscriber instead of one per post. Idle, that costs one loop turn; under load it folds
        many posts into each write, so the syscalls per second stay bounded by the loop's pace.
        """
        ch.last_seq = events[-1].seq
        if not ch.pending:
            asyncio.get_running_loop().call_soon(self._flush, ch)
        ch.pending.append(events)
        if committed_at is not None and ch.pending_since is None:
            ch.pending_since = committed_at

    def _flush(self, ch: Channel) -> None:
        batches, committed_at, flushed = ch.pending, ch.pending_since, ch.flushed
        ch.pending, ch.pending_since, ch.flushed = [], None, None
        if flushed is not None:
            flushed.set_result(None)  # its waiters run after this pass has written everything
        if not batches:
            return
        events = [e for batch in batches for e in batch]
        first, last = events[0].seq, events[-1].seq
        encoded = _Encoded(ch.project_id, batches)
        delivered = 0
        for sub in list(ch.subs.values()):
            if not sub.live or sub.sent_seq >= last:
                continue
            if sub.sent_seq >= first:  # partly replayed already: send only the rest
                frames, packets = encode_events(
                    ch.project_id, events[sub.sent_seq - first + 1:], sub.prefixes, sub.batch)
            else:
                frames, packets = encoded.get(sub.prefixes, sub.batch)
            sub.sent_seq = last
            sub.session.deliver(frames, packets)
            delivered += 1
        if self.on_delivered is not None and committed_at is not None:
            self.on_delivered(delivered, time.monotonic() - committed_at)
