"""Replay then live, with no gap and no duplicate, while the owner keeps posting."""

from __future__ import annotations

import random
import threading
import time

from harness import Api, ServerProcess, change

from server.helpers import all_events, wait_until


def test_subscribers_joining_mid_stream_see_every_event_once(server: ServerProcess, api: Api, owner,
                                                              project, listen) -> None:
    token, _ = owner
    # A backlog longer than one replay page (500), so replays take several reads.
    for i in range(3):
        assert api.post_changes(token, project, [change(f"backlog/{i}/{j}.mov", n=j % 3)
                                                 for j in range(400)]).status_code == 200
    stop = threading.Event()
    acked: list[int] = []
    errors: list[str] = []

    def poster() -> None:
        own = Api(server.url)
        rng = random.Random(7)
        i = 0
        while not stop.is_set():
            r = own.post_changes(token, project, [change(f"live/{i}/{j}.mov", n=j % 3)
                                                  for j in range(rng.randint(1, 5))])
            if r.status_code != 200:
                errors.append(r.text)
                return
            acked.append(r.json()["last_seq"])
            i += 1
            time.sleep(rng.uniform(0, 0.004))
        own.http.close()

    thread = threading.Thread(target=poster)
    thread.start()
    rng = random.Random(11)
    subscribers = []  # (listener, since_seq or None for the seed form, ack)
    try:
        for i in range(8):
            target = len(acked) + 4
            wait_until(lambda t=target: len(acked) >= t, what="more posts")
            transports = [["websocket"], ["polling"]][i % 2]
            client = listen(token, transports)
            if i % 4 == 3:
                ack = client.subscribe(project)  # the seed form: live from about now
                subscribers.append((client, None, ack))
                continue
            since = rng.randint(0, acked[-1])
            ack = client.subscribe({"projectId": project, "since_seq": since, "batch": i % 4 == 2})
            subscribers.append((client, since, ack))
            time.sleep(rng.uniform(0, 0.1))
        target = len(acked) + 5  # every subscriber sees some live posts after its ack
        wait_until(lambda: len(acked) >= target, what="more posts")
    finally:
        stop.set()
        thread.join()
    assert not errors, errors
    last = acked[-1]
    assert [e["seq"] for e in all_events(api, token, project)] == list(range(1, last + 1))

    for client, since, ack in subscribers:
        assert ack["ok"] is True and ack["last_seq"] >= (since or 0), ack
        wait_until(lambda c=client: (c.seqs() or [0])[-1] >= last, 20,
                   f"event {last} (since {since}, {client.transports}, ack {ack}: got "
                   f"{len(client.seqs())} up to {(client.seqs() or [0])[-1]}, {client.disconnects})")
        seqs = client.seqs()
        if since is None:
            since = seqs[0] - 1
            assert since <= ack["last_seq"], "the seed form starts no later than the ack"
        assert seqs == list(range(since + 1, last + 1)), (
            f"since {since}: first {seqs[:3]}, gaps or repeats "
            f"{sorted(set(range(since + 1, last + 1)) ^ set(seqs))[:10]}")
