"""Locks with real agents: a file locked by one member is read-only in everyone else's folder
(the mode comes back on unlock), a change made to it elsewhere waits for the lock to go, and an
editing app's lock file (Premiere's ``.prlock``, Avid's ``.lck``) takes and releases the lock by
itself."""

from __future__ import annotations

import stat
import time

import pytest
from harness import all_events

from agent_join.helpers import wait_until, write


def writable(path) -> bool:
    return bool(path.stat().st_mode & stat.S_IWUSR)


def test_a_locked_file_is_read_only_elsewhere_and_a_change_to_it_waits(team, api):
    write(team.owner.root, "cut.prproj", b"v0")
    (team.owner.root / "cut.prproj").chmod(0o640)
    team.start()
    ana = team.member("Ana")
    vic = team.member("Vic", "viewer")
    team.converged()

    out = ana.run("lock", str(ana.mirror / "cut.prproj"))
    assert out.returncode == 0, out.stderr
    for folder in (team.owner.root, vic.mirror):
        wait_until(lambda f=folder: not writable(f / "cut.prproj"), 20, f"read-only in {folder}")
    assert writable(ana.mirror / "cut.prproj")
    out = vic.run("lock", str(vic.mirror / "cut.prproj"))
    assert out.returncode != 0 and "forbidden" in out.stderr  # a viewer cannot lock

    # The owner saves over it anyway (root ignores the mode): refused while Ana holds it.
    (team.owner.root / "cut.prproj").chmod(0o640)
    write(team.owner.root, "cut.prproj", b"owner's edit while locked")
    time.sleep(3)
    paths = [e["change"]["path"] for e in all_events(api, team.owner_token, team.project_id)]
    assert paths == ["cut.prproj"], paths

    out = ana.run("unlock", str(ana.mirror / "cut.prproj"))
    assert out.returncode == 0, out.stderr
    wait_until(lambda: writable(vic.mirror / "cut.prproj"), 20, "writable again")
    assert team.converged()["cut.prproj"] == b"owner's edit while locked"
    assert stat.S_IMODE((vic.mirror / "cut.prproj").stat().st_mode) & 0o200


@pytest.mark.parametrize(("guarded", "lock_file", "app"), [
    ("edit/cut.prproj", "edit/cut.prlock", "Premiere has it open"),
    ("bins/Reel 1.avb", "bins/Reel 1.lck", "Avid has the bin open"),
])
def test_an_apps_lock_file_locks_the_file_it_guards(team, api, guarded, lock_file, app):
    write(team.owner.root, guarded, b"v0")
    team.start()
    ana = team.member("Ana")
    team.converged()

    write(ana.mirror, lock_file, app.encode())
    wait_until(lambda: not writable(team.owner.root / guarded), 20, "the lock")
    r = api.get(f"/api/projects/{team.project_id}/locks", token=team.owner_token)
    assert [(lk["path"], lk["user"]["name"]) for lk in r.json()["locks"]] == [(guarded, "Ana")]
    (ana.mirror / lock_file).unlink()
    wait_until(lambda: writable(team.owner.root / guarded), 20, "the unlock")
    assert not (team.owner.root / lock_file).exists()  # never synced
