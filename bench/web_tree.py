"""The project page at 10,000 and 100,000 files, in Debian's Chromium through Playwright.

For each size, a fresh ``vidsync serve`` (SQLite) gets a project laid out like a post-production
job: half the files are camera clips, 1,000 to a folder (``footage/day01/clip_00042_a.mov``),
half are frames of image sequences, one shot to a folder (``renders/sh001/sh001_comp.0000001.exr``).
Every change names one small stored content, so ingesting takes seconds. A collaborator's page
then opens the project and the script prints:

- **tree shown**: from navigation start to the tree's rows in the page (``performance.now()``).
- **folder open**: from the click on a closed folder of 1,000 clips to its rows painted (the
  next animation frame after they are in the page); **sequence open**: the same for a shot's
  frames.
- **live change**: from just before the owner's ``POST files/update`` to the new row in that
  open folder (page clock vs. script clock, same machine), median of ``--changes``.
- **JS heap**: ``usedSize`` after a forced garbage collection, once the tree shows and at the end.

    .venv/bin/python bench/web_tree.py [--sizes 10000,100000] [--changes 10]

Needs the web UI built (``make web``), Playwright for Python and /usr/bin/chromium.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

from vidsync.testing import ServerProcess

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
# The page opens projects up to this many files with every folder expanded (web/src/lib/tree.ts).
OPEN_ALL_MAX = 2_000
CONTENT = b"vidsync web tree benchmark\n"
CONTENT_HASH = hashlib.sha256(CONTENT).hexdigest()
CLIPS_PER_FOLDER = 1_000
BATCH = 1_000

# Resolves with ms from `performance.now()` before `act()` to the first animation frame after
# `done()` holds: what a person sees, not only what React committed.
TIMED = """async ([act, done]) => {
  const check = new Function('return (' + done + ')()');
  const start = performance.now();
  new Function('return (' + act + ')()')();
  while (!check()) await new Promise((r) => setTimeout(r, 1));
  await new Promise((r) => requestAnimationFrame(() => r()));
  return performance.now() - start;
}"""

# Records when the tree's first row enters the page, and when each file row is first seen.
WATCH = """(() => {
  window.rowSeenAt = {};
  new MutationObserver(() => {
    if (window.treeShownAt === undefined && document.querySelector('.tree-row'))
      window.treeShownAt = performance.now();
    for (const row of document.querySelectorAll('.tree-row.file[data-path^="footage/day01/a-live"]'))
      if (!(row.dataset.path in window.rowSeenAt)) window.rowSeenAt[row.dataset.path] = Date.now();
  }).observe(document, { childList: true, subtree: true });
})()"""


class Api:
    def __init__(self, url: str) -> None:
        self.url = url

    def call(self, method: str, path: str, token: str = "", body: object = None,
             data: bytes | None = None) -> dict:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        elif data is not None:
            headers["Content-Type"] = "application/octet-stream"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        with urllib.request.urlopen(req, timeout=120) as res:
            raw = res.read()
        return json.loads(raw) if raw else {}

    def register(self, name: str) -> str:
        return self.call("POST", "/api/auth/register", body={
            "email": f"{name}-{time.time_ns()}@example.com", "password": "a long password"})["token"]


def change(path: str) -> dict:
    return {"path": path, "op": "create", "hash": CONTENT_HASH, "size": len(CONTENT),
            "mtime": 1_764_000_000_000}


def layout(n: int) -> list[str]:
    """Half clips, 1,000 a folder; half frames, in 25 shots (a shot of n/50 frames)."""
    clips = [f"footage/day{i // CLIPS_PER_FOLDER + 1:02d}/clip_{i % CLIPS_PER_FOLDER:05d}_"
             f"{'abcd'[i % 4]}.mov" for i in range(n // 2)]
    shots, per_shot = 25, (n - n // 2) // 25
    frames = [f"renders/sh{s + 1:03d}/sh{s + 1:03d}_comp.{f + 1:07d}.exr"
              for s in range(shots) for f in range(per_shot)]
    return clips + frames


def setup(api: Api, n: int) -> tuple[str, str, str, float]:
    owner = api.register("owner")
    project = api.call("POST", "/api/projects", owner, {"name": f"{n} files"})["project"]["id"]
    base = f"/api/projects/{project}"
    api.call("PUT", f"{base}/blocks/{CONTENT_HASH}", owner, data=CONTENT)
    api.call("POST", f"{base}/manifests", owner, {
        "hash": CONTENT_HASH, "size": len(CONTENT),
        "blocks": [{"hash": CONTENT_HASH, "size": len(CONTENT)}]})
    paths = layout(n)
    started = time.perf_counter()
    # One poster: the log is ordered per project anyway.
    for i in range(0, len(paths), BATCH):
        api.call("POST", f"{base}/files/update", owner,
                 {"changes": [change(p) for p in paths[i:i + BATCH]]})
    ingest_s = time.perf_counter() - started
    viewer = api.register("viewer")
    code = api.call("POST", f"{base}/invites", owner, {})["invite"]["code"]
    api.call("POST", "/api/projects/join", viewer, {"invite_code": code})
    return owner, viewer, project, ingest_s


def heap_mb(cdp) -> float:
    cdp.send("HeapProfiler.collectGarbage")
    return cdp.send("Runtime.getHeapUsage")["usedSize"] / 2**20


def measure(browser, url: str, n: int, changes: int) -> dict:
    api = Api(url)
    owner, viewer, project, ingest_s = setup(api, n)
    context = browser.new_context(base_url=url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    # Signed in as the UI's login would leave it: the session cookie, and the page's note of it.
    context.add_cookies([{"name": "vidsync_session", "value": viewer, "url": url,
                          "httpOnly": True, "sameSite": "Strict"}])
    page.goto("/login")
    page.evaluate("localStorage.setItem('vidsync.signedIn', '1')")
    page.add_init_script(WATCH)
    page.goto(f"/projects/{project}")
    page.wait_for_selector(".tree-row", timeout=120_000)
    tree_ms = page.evaluate("window.treeShownAt")
    # The listings the tree was built from: the root's (`?dir=`), and a small project's snapshot.
    files_ms = page.evaluate("""(shown) => Math.max(...performance.getEntriesByType('resource')
      .filter((e) => /\\/files(\\?dir=[^&]*)?$/.test(e.name) && e.startTime < shown)
      .map((e) => e.responseEnd))""", tree_ms)
    cdp = context.new_cdp_session(page)
    heap_open = heap_mb(cdp)
    page.wait_for_selector('.conn[data-state="live"]')

    def click(path: str, kind: str = "folder") -> str:
        selector = f'.tree-row.{kind}[data-path="{path}"] button'
        return f"() => document.querySelector({json.dumps(selector)}).click()"

    def shown(selector: str) -> str:
        return f"() => !!document.querySelector({json.dumps(selector)})"

    # A shot's frames first (then renders/ closes again, so that footage/ stays in view).
    page.evaluate(TIMED, [click("renders/"), shown('.tree-row.folder[data-path="renders/sh001/"]')])
    page.evaluate(TIMED, [click("renders/sh001/"), shown(".tree-row.sequence")])
    seq_ms = page.evaluate(TIMED, [
        "() => document.querySelector('.tree-row.sequence button').click()",
        shown('.tree-row.file[data-path^="renders/sh001/"]')])
    page.evaluate(TIMED, [click("renders/"), "() => !document.querySelector('.tree-row.sequence')"])
    folder = "footage/day01/"
    page.evaluate(TIMED, [click("footage/"), shown(f'.tree-row.folder[data-path="{folder}"]')])
    open_ms = page.evaluate(TIMED, [click(folder), shown(f'.tree-row.file[data-path^="{folder}clip_"]')])

    base = f"/api/projects/{project}"
    live = []
    for i in range(changes):
        path = f"{folder}a-live-{i:03d}.mov"  # sorts first: in view in the open folder
        sent = time.time() * 1000
        api.call("POST", f"{base}/files/update", owner, {"changes": [change(path)]})
        page.wait_for_function("p => p in window.rowSeenAt", arg=path, timeout=10_000)
        live.append(page.evaluate("p => window.rowSeenAt[p]", path) - sent)
    heap_end = heap_mb(cdp)
    context.close()
    return {"files": n, "ingest_s": ingest_s, "tree_ms": tree_ms, "files_ms": files_ms,
            "folder_open_ms": open_ms,
            "sequence_open_ms": seq_ms, "live_p50_ms": statistics.median(live),
            "live_max_ms": max(live), "heap_open_mb": heap_open, "heap_end_mb": heap_end}


def run_size(browser, n: int, changes: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="vidsync-webtree-") as data:
        server = ServerProcess(Path(data), cwd=ROOT).start()
        try:
            return measure(browser, server.url, n, changes)
        finally:
            server.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="10000,100000")
    p.add_argument("--changes", type=int, default=10, help="live changes timed per size")
    args = p.parse_args()
    sizes = [int(n) for n in args.sizes.split(",")]
    if min(sizes) <= OPEN_ALL_MAX:
        # Smaller projects open with every folder expanded, so there is no closed folder to time.
        p.error(f"each of --sizes must be over {OPEN_ALL_MAX} (web/src/lib/tree.ts OPEN_ALL_MAX)")
    if not (ROOT / "src/vidsync/web/static/index.html").is_file():
        sys.exit("the web UI is not built: make web")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
        results = [run_size(browser, n, args.changes) for n in sizes]
        browser.close()
    load = os.getloadavg()
    print(f"\nweb tree, Chromium {browser.version}, load average {load[0]:.2f} {load[1]:.2f}")
    print(f"{'files':>8} {'ingest':>8} {'GET /files':>11} {'tree shown':>11} "
          f"{'folder open':>12} "
          f"{'seq open':>9} {'live p50':>9} {'live max':>9} {'heap open':>10} {'heap end':>9}")
    for r in results:
        print(f"{r['files']:>8} {r['ingest_s']:>7.1f}s {r['files_ms']:>9.0f}ms "
              f"{r['tree_ms']:>9.0f}ms "
              f"{r['folder_open_ms']:>10.0f}ms {r['sequence_open_ms']:>7.0f}ms "
              f"{r['live_p50_ms']:>7.0f}ms {r['live_max_ms']:>7.0f}ms "
              f"{r['heap_open_mb']:>8.1f}MB {r['heap_end_mb']:>7.1f}MB")


if __name__ == "__main__":
    main()
