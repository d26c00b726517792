"""Playing project files in the page: a real clip plays in Chromium, seeking fetches a range.

tests/media holds two 3 s clips made with ffmpeg (VP9 in WebM, H.264 in MP4). The seek test makes
a large H.264 file with ffmpeg when it is installed (.ci/run installs it).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from web_support import ROOT, Api

expect = pytest.importorskip("playwright.sync_api").expect

MEDIA = ROOT / "tests" / "media"


def setup(server) -> tuple[Api, str, str, str]:
    api = Api(server.url)
    owner, _ = api.register("Olivia")
    project_id = api.project(owner, "Launch film")
    viewer, _ = api.viewer(owner, project_id)
    return api, owner, viewer, project_id


def open_player(new_page, server, token: str, project_id: str, path: str):
    page = new_page(server.url, token)
    page.goto(f"/projects/{project_id}")
    page.get_by_role("button", name=f"Play {path}", exact=True).click()
    dialog = page.get_by_role("dialog", name=path.rsplit("/", 1)[-1])
    expect(dialog).to_be_visible()
    return page, dialog


def wait_playing(page, past_s: float) -> None:
    page.wait_for_function(
        "t => { const v = document.querySelector('.player-media');"
        " return v && !v.error && v.currentTime > t; }", arg=past_s, timeout=20_000)


@pytest.mark.parametrize("name", ["clip.webm", "clip.mp4"])
def test_clip_plays(start_server, new_page, screenshot, name):
    server = start_server()
    api, owner, viewer, project_id = setup(server)
    path = f"dailies/{name}"
    api.post_files(owner, project_id, {path: (MEDIA / name).read_bytes(),
                                       "dailies/notes.txt": b"not media"})
    page, dialog = open_player(new_page, server, viewer, project_id, path)
    wait_playing(page, 0.5)
    video = dialog.locator("video")
    assert video.evaluate("v => v.videoWidth") == 160
    if shutil.which("ffmpeg"):  # the server has it too: a poster frame, served as a JPEG
        poster = video.get_attribute("poster")
        assert poster and poster.endswith("/poster")
        r = page.request.get(poster)
        assert r.status == 200 and r.headers["content-type"] == "image/jpeg"
    if name == "clip.webm":
        video.evaluate("v => { v.pause(); v.currentTime = 1.5; }")
        # A function, not an expression: Playwright polls an expression with eval, which the CSP blocks.
        page.wait_for_function("() => document.querySelector('.player-media').readyState >= 2")
        screenshot(page, "project-player", full_page=False)
    # Only media get a play button.
    expect(page.get_by_role("button", name="Play dailies/notes.txt")).to_have_count(0)
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)


def test_unplayable_file_offers_download(start_server, new_page):
    server = start_server()
    api, owner, viewer, project_id = setup(server)
    api.post_files(owner, project_id, {"dailies/broken.mp4": b"\x00" * 5000})
    page, dialog = open_player(new_page, server, viewer, project_id, "dailies/broken.mp4")
    expect(dialog.get_by_role("alert")).to_contain_text("This browser cannot play broken.mp4")
    with page.expect_download() as info:
        dialog.get_by_role("button", name="Download broken.mp4").click()
    assert info.value.suggested_filename == "broken.mp4"


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg makes the large clip")
def test_seek_fetches_a_range_not_the_whole_file(start_server, new_page, tmp_path: Path):
    clip = tmp_path / "big.mp4"
    # About 75 MB: a minute of noisy 320x180 H.264 (10 Mbit/s), a keyframe every second. The
    # browser reads ahead some seconds of it (so a short file would be read whole anyway).
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi",
         "-i", "testsrc2=size=320x180:rate=24", "-t", "60", "-vf", "noise=alls=30:allf=t",
         "-c:v", "libx264", "-preset", "ultrafast", "-crf", "12", "-pix_fmt", "yuv420p",
         "-g", "24", "-movflags", "+faststart", str(clip)], check=True, timeout=120)
    data = clip.read_bytes()
    server = start_server()
    api, owner, viewer, project_id = setup(server)
    api.post_files(owner, project_id, {"dailies/big.mp4": data})

    page = new_page(server.url, viewer)
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    received: dict[str, int] = {}
    ranges: dict[str, str] = {}
    urls: dict[str, str] = {}
    answers: dict[str, tuple[int, str]] = {}
    def sent(e: dict) -> None:
        urls[e["requestId"]] = e["request"]["url"]
        ranges.setdefault(e["requestId"], e["request"]["headers"].get("Range", ""))

    cdp.on("Network.requestWillBeSent", sent)
    cdp.on("Network.requestWillBeSentExtraInfo", lambda e: e["headers"].get("Range") and
           ranges.__setitem__(e["requestId"], e["headers"]["Range"]))
    cdp.on("Network.responseReceived", lambda e: answers.__setitem__(
        e["requestId"], (e["response"]["status"],
                         e["response"]["headers"].get("Content-Range", "")
                         or e["response"]["headers"].get("content-range", ""))))
    cdp.on("Network.dataReceived", lambda e: received.__setitem__(
        e["requestId"], received.get(e["requestId"], 0) + e["dataLength"]))

    page.goto(f"/projects/{project_id}")
    page.get_by_role("button", name="Play dailies/big.mp4", exact=True).click()
    wait_playing(page, 0.2)
    duration = page.evaluate("document.querySelector('.player-media').duration")
    assert 59 < duration < 61
    page.evaluate("t => { document.querySelector('.player-media').currentTime = t; }",
                  duration * 0.75)
    wait_playing(page, duration * 0.75 + 0.3)

    media = [rid for rid, url in urls.items()
             if "/api/download/" in url and not url.endswith("/poster")]
    past_middle = [(ranges.get(rid, ""), answers[rid]) for rid in answers
                   if re.fullmatch(r"bytes=(\d+)-\d*", ranges.get(rid, ""))
                   and int(re.match(r"bytes=(\d+)", ranges[rid]).group(1)) > len(data) // 2]
    assert past_middle, f"no range request past the middle: {ranges}"
    for header, (status, content_range) in past_middle:
        start = int(re.match(r"bytes=(\d+)", header).group(1))
        assert status == 206 and content_range.startswith(f"bytes {start}-"), (header, status)
    # What was read before the seek stopped short of it: the file was not read through.
    seek_start = min(int(re.match(r"bytes=(\d+)", h).group(1)) for h, _ in past_middle)
    for rid in media:
        start = int(m.group(1)) if (m := re.match(r"bytes=(\d+)", ranges.get(rid, ""))) else 0
        if start < seek_start:
            assert start + received.get(rid, 0) < seek_start, (ranges.get(rid), received.get(rid))
    total = sum(received.get(rid, 0) for rid in media)
    print(f"seek test: {len(data)} bytes in the file, {total} received, "
          f"ranges {[ranges.get(rid) for rid in media]}")
    assert total < len(data)
