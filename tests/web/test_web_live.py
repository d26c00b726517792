"""A collaborator's project page following the owner's changes: badge, file tree and feed, over
WebSocket, over long-polling when WebSocket is refused, over /events?wait= when Socket.IO is
unreachable; through a server restart; and after the owner removes the collaborator."""

from __future__ import annotations

import re
import threading
import time
import zipfile
from pathlib import Path

import pytest
from web_support import LATENCIES, SNAPSHOT, Api

expect = pytest.importorskip("playwright.sync_api").expect

# Records, in the page, when each badge text first appears in the DOM (epoch ms, like
# time.time()), and the most badges ever shown at once.
WATCH_BADGES = """() => {
  window.badgeShownAt = {};
  window.maxBadges = 0;
  new MutationObserver(() => {
    const badges = document.querySelectorAll('.sync-badge');
    window.maxBadges = Math.max(window.maxBadges, badges.length);
    const text = document.querySelector('.sync-badge-text')?.textContent;
    if (text && !(text in window.badgeShownAt)) window.badgeShownAt[text] = Date.now();
  }).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""

def setup_project(server) -> tuple[Api, str, str, str, dict]:
    """An owner's project with a few files and a viewer: (api, owner token, project, viewer
    token, viewer user)."""
    api = Api(server.url)
    owner_token, _ = api.register("Olivia")
    project_id = api.project(owner_token, "Launch film", "Edit of the spring launch video")
    api.post_files(owner_token, project_id, SNAPSHOT)
    viewer_token, viewer = api.viewer(owner_token, project_id)
    return api, owner_token, project_id, viewer_token, viewer


def open_project(new_page, server, token: str, project_id: str, **size):
    page = new_page(server.url, token, **size)
    page.goto(f"/projects/{project_id}")
    expect(page.get_by_role("heading", name="Launch film")).to_be_visible()
    return page


def row(page, path: str):
    return page.locator(f'.tree-row.file[data-path="{path}"]')


def reveal(page, path: str) -> None:
    """Scroll the file tree until the row of ``path`` is in the page (rows are windowed)."""
    page.evaluate("""async (path) => {
      const box = document.querySelector('.tree-scroll');
      const sel = `.tree-row[data-path="${CSS.escape(path)}"]`;
      for (let top = 0; top <= box.scrollHeight && !document.querySelector(sel);
           top += box.clientHeight / 2) {
        box.scrollTop = top;
        await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
      }
    }""", path)


def measure_post_to_badge(page, api: Api, token: str, project_id: str, path: str) -> float:
    """POST one change (its content already stored); returns ms from just before the POST to
    its badge appearing in the page."""
    change = api.change(token, project_id, path, path.encode() * 100)
    start_ms = time.time() * 1000
    api.post_changes(token, project_id, [change])
    key = f"Synced: {path}"
    page.wait_for_function("key => key in window.badgeShownAt", arg=key, timeout=10_000)
    return page.evaluate("key => window.badgeShownAt[key]", key) - start_ms


def test_owner_change_shows_badge_and_row(start_server, new_page, screenshot):
    server = start_server()
    api, owner_token, project_id, viewer_token, _ = setup_project(server)
    page = open_project(new_page, server, viewer_token, project_id)
    expect(page.locator(".conn")).to_have_attribute("data-transport", "websocket")
    expect(page.locator(".conn")).to_have_text("Live · WebSocket")

    # The snapshot: folders, sizes, modification times.
    expect(row(page, "footage/a-cam/A001_C004.mov")).to_contain_text("2.3 MB")
    expect(row(page, "footage/a-cam/A001_C004.mov").locator("time")).to_have_attribute(
        "datetime", re.compile(r"^2025-11-2\dT"))
    expect(page.get_by_role("button", name=re.compile(r"^footage\/"))).to_have_attribute(
        "aria-expanded", "true")

    page.evaluate(WATCH_BADGES)
    latencies = []
    for i in range(20):
        path = f"footage/a-cam/A002_C{i:03d}.mov"
        latencies.append(measure_post_to_badge(page, api, owner_token, project_id, path))
        reveal(page, path)
        expect(row(page, path)).to_be_visible()
        expect(page.locator(".feed-item").first).to_contain_text(path)
    LATENCIES.setdefault("WebSocket", []).extend(latencies)
    print(f"POST-to-badge over WebSocket (ms): {[round(x, 1) for x in latencies]}")
    screenshot(page, "project-viewer", full_page=False)

    # The badge leaves 2 s after the last event (then a 0.4 s fade), not before.
    last_event = time.monotonic()
    expect(page.locator(".sync-badge")).to_have_count(0, timeout=5_000)
    assert time.monotonic() - last_event >= 1.9

    # Hundreds at once: one batch of 500 and 30 single posts in parallel give one badge.
    batch = [api.change(owner_token, project_id, f"renders/frame-{i:04d}.png", b"f" * (1000 + i % 7))
             for i in range(500)]
    singles = [[api.change(owner_token, project_id, f"audio/stems/stem-{i:02d}.wav", b"s")]
               for i in range(30)]
    threads = [threading.Thread(target=api.post_changes, args=(owner_token, project_id, changes))
               for changes in [batch, *singles]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expect(page.locator(".sync-badge-more")).to_have_text(" and 529 more")
    # Rows are windowed (only those in view are in the page): the tree's label counts them all.
    expect(page.get_by_role("group", name=f"{len(SNAPSHOT) + 20 + 500 + 30} files")).to_be_visible()
    # The 500 renders are one frame sequence, a line of its own.
    frames = page.get_by_role("button", name=re.compile(r"^frame-\[0000-0499\]\.png"))
    expect(frames).to_contain_text("500 frames")
    expect(page.locator(".feed-item")).to_have_count(200)  # the feed keeps the latest 200
    expect(page.locator(".sync-badge")).to_have_count(0, timeout=5_000)
    assert page.evaluate("window.maxBadges") == 1

    # A deletion removes the row.
    reveal(page, "edit/launch-v3.prproj")
    expect(row(page, "edit/launch-v3.prproj")).to_be_visible()
    api.post_files(owner_token, project_id, {"edit/launch-v3.prproj": None})
    expect(row(page, "edit/launch-v3.prproj")).to_have_count(0)
    expect(page.locator(".feed-item").first).to_contain_text("Deleted")

    # Folders fold and unfold from the keyboard.
    folder = page.get_by_role("button", name=re.compile(r"^renders\/"))
    folder.focus()
    page.keyboard.press("Enter")
    expect(folder).to_have_attribute("aria-expanded", "false")
    expect(frames).to_have_count(0)
    page.keyboard.press("Space")
    expect(frames).to_have_attribute("aria-expanded", "false")
    expect(row(page, "renders/frame-0000.png")).to_have_count(0)
    frames.click()
    reveal(page, "renders/frame-0000.png")
    expect(row(page, "renders/frame-0000.png")).to_be_visible()


def test_narrow_screen(start_server, new_page, screenshot):
    server = start_server()
    api, owner_token, project_id, viewer_token, _ = setup_project(server)
    page = open_project(new_page, server, viewer_token, project_id, width=390, height=844)
    expect(page.locator(".conn")).to_have_text("Live · WebSocket")
    api.post_files(owner_token, project_id, {"footage/a-cam/A001_C005.mov": b"m" * 1_800_000})
    expect(row(page, "footage/a-cam/A001_C005.mov")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    screenshot(page, "project-narrow", full_page=False)


def test_websocket_refused_runs_on_polling(start_server, new_page, screenshot):
    server = start_server("--no-websocket")
    api, owner_token, project_id, viewer_token, _ = setup_project(server)
    page = open_project(new_page, server, viewer_token, project_id)
    expect(page.locator(".conn")).to_have_text(
        "Live · long-polling fallback (WebSocket unavailable)")
    expect(page.locator(".conn")).to_have_attribute("data-transport", "polling")

    page.evaluate(WATCH_BADGES)
    latencies = []
    for i in range(10):
        path = f"footage/b-cam/B002_C{i:03d}.mov"
        latencies.append(measure_post_to_badge(page, api, owner_token, project_id, path))
        reveal(page, path)
        expect(row(page, path)).to_be_visible()
    LATENCIES.setdefault("Socket.IO long-polling", []).extend(latencies)
    print(f"POST-to-badge over long-polling (ms): {[round(x, 1) for x in latencies]}")
    screenshot(page, "project-polling", full_page=False)


def test_socketio_unreachable_falls_back_to_events_wait(start_server, new_page):
    server = start_server()
    api, owner_token, project_id, viewer_token, _ = setup_project(server)
    page = new_page(server.url, viewer_token)
    # As behind a proxy that does not pass /socket.io/: both its transports fail.
    page.route(re.compile(r"/socket\.io/"), lambda route: route.abort())
    page.route_web_socket(re.compile(r"/socket\.io/"), lambda ws: ws.close())
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(f"/projects/{project_id}")
    # A WebSocket closed during the handshake is not an error to Socket.IO: the attempt ends
    # with its connect timeout (10 s), then the page tries plain HTTP.
    expect(page.locator(".conn")).to_have_text(
        "Live · HTTP long-polling fallback (Socket.IO unavailable)", timeout=20_000)

    page.evaluate(WATCH_BADGES)
    latencies = []
    for i in range(5):
        path = f"audio/vo-take-{i}.wav"
        latencies.append(measure_post_to_badge(page, api, owner_token, project_id, path))
        reveal(page, path)
        expect(row(page, path)).to_be_visible()
    LATENCIES.setdefault("HTTP /events?wait=", []).extend(latencies)
    print(f"POST-to-badge over /events?wait= (ms): {[round(x, 1) for x in latencies]}")
    assert any(re.search(r"/events\?since_seq=\d+&limit=\d+&wait=25", u) for u in requests)


def feed_seqs(page) -> list[int]:
    return [int(s) for s in page.locator(".feed-item").evaluate_all(
        "items => items.map(i => i.dataset.seq)")]


def test_server_restart_resumes_from_last_seq(start_server, new_page, screenshot):
    server = start_server()
    api, owner_token, project_id, viewer_token, _ = setup_project(server)
    page = open_project(new_page, server, viewer_token, project_id)
    conn = page.locator(".conn")
    expect(conn).to_have_text("Live · WebSocket")
    before = api.post_files(owner_token, project_id, {f"clips/before-{i}.mov": b"b" for i in range(3)})
    expect(row(page, "clips/before-2.mov")).to_be_visible()

    server.stop()
    expect(conn).to_have_attribute("data-state", "reconnecting")
    expect(conn).to_contain_text(re.compile(r"Reconnecting · (next try in \d+ s|trying now…)"))
    # Let it back off to a long wait, so the events below are posted while it is away.
    expect(conn).to_contain_text(re.compile(r"next try in ([4-9]|\d\d) s"), timeout=30_000)
    screenshot(page, "project-reconnecting", full_page=False)

    server.start()
    missed = {f"clips/missed-{i}.mov": b"m" * (i + 1) for i in range(5)}
    last = api.post_files(owner_token, project_id, missed)
    assert page.locator(".conn").get_attribute("data-state") == "reconnecting"
    for path in missed:
        expect(row(page, path)).to_have_count(0)

    expect(conn).to_have_text("Live · WebSocket", timeout=20_000)
    for path in missed:
        expect(row(page, path)).to_be_visible()
    expect(page.locator(".feed-item").first).to_have_attribute("data-seq", str(last))
    seqs = feed_seqs(page)
    assert len(seqs) == len(set(seqs)), f"an event shown twice: {seqs}"
    assert seqs == list(range(last, 0, -1)), seqs  # every event from 1 to last, once
    assert before < last

    # Live events keep coming after the resume, still once each.
    api.post_files(owner_token, project_id, {"clips/after.mov": b"a"})
    expect(row(page, "clips/after.mov")).to_be_visible()
    seqs = feed_seqs(page)
    assert seqs == list(range(last + 1, 0, -1)), seqs


def test_removed_member_stops_receiving_and_says_why(start_server, new_page, screenshot):
    server = start_server()
    api, owner_token, project_id, viewer_token, viewer = setup_project(server)
    viewer_page = open_project(new_page, server, viewer_token, project_id)
    expect(viewer_page.locator(".conn")).to_have_text("Live · WebSocket")

    owner_page = open_project(new_page, server, owner_token, project_id)
    owner_page.get_by_role("button", name=f"Remove {viewer['email']}").click()
    owner_page.get_by_role("button", name=f"Confirm removing {viewer['email']}").click()
    expect(owner_page.get_by_role("heading", name="Members (1)")).to_be_visible()

    alert = viewer_page.get_by_role("alert")
    expect(alert).to_contain_text("You no longer receive updates from this project.")
    expect(alert).to_contain_text("The owner removed you from this project.")
    expect(viewer_page.locator(".conn")).to_have_text("Stopped · no longer receiving updates")
    expect(viewer_page.get_by_role("button", name=re.compile("^Download"))).to_have_count(0)
    screenshot(viewer_page, "project-removed", full_page=False)

    api.post_files(owner_token, project_id, {"clips/after-removal.mov": b"x"})
    expect(row(owner_page, "clips/after-removal.mov")).to_be_visible()
    viewer_page.wait_for_timeout(1_000)
    expect(row(viewer_page, "clips/after-removal.mov")).to_have_count(0)
    expect(viewer_page.locator(".sync-badge")).to_have_count(0)


def test_offline_then_back(start_server, new_page):
    server = start_server()
    api, owner_token, project_id, viewer_token, _ = setup_project(server)
    page = open_project(new_page, server, viewer_token, project_id)
    conn = page.locator(".conn")
    expect(conn).to_have_text("Live · WebSocket")

    page.context.set_offline(True)
    expect(conn).to_have_text("Offline · waiting for the network")
    last = api.post_files(owner_token, project_id, {"clips/while-offline.mov": b"o"})
    page.wait_for_timeout(500)
    expect(row(page, "clips/while-offline.mov")).to_have_count(0)

    page.context.set_offline(False)
    expect(conn).to_have_text("Live · WebSocket")
    expect(row(page, "clips/while-offline.mov")).to_be_visible()
    assert feed_seqs(page) == list(range(last, 0, -1))


def test_download_file_and_folder(start_server, new_page):
    server = start_server()
    _, _, project_id, viewer_token, _ = setup_project(server)
    page = open_project(new_page, server, viewer_token, project_id)

    with page.expect_download() as info:
        page.get_by_role("button", name="Download audio/interview-mix.wav", exact=True).click()
    download = info.value
    assert download.suggested_filename == "interview-mix.wav"
    assert Path(download.path()).read_bytes() == SNAPSHOT["audio/interview-mix.wav"]

    with page.expect_download() as info:
        page.get_by_role("button", name="Download footage/ as zip").click()
    with zipfile.ZipFile(info.value.path()) as archive:
        names = sorted(archive.namelist())
        assert [n.split("footage/", 1)[-1] for n in names] == [
            "a-cam/A001_C004.mov", "b-cam/B001_C002.mov"], names
        big = next(n for n in names if n.endswith("A001_C004.mov"))
        assert archive.read(big) == SNAPSHOT["footage/a-cam/A001_C004.mov"]
