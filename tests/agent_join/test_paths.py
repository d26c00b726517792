"""Which network paths a mirror may write, checked on the client whatever the server said.

Case-insensitive and Windows filesystems cannot be mounted here: those rules are exercised by
giving the policy the filesystem's properties, with real files on the real disk."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from vidsync.agent.mirror.apply import Applier
from vidsync.agent.mirror.safepath import PathPolicy, UnsafePath, _fs_type, detect_case_insensitive
from vidsync.agent.mirror.state import MirrorState


@pytest.mark.parametrize("path", [
    "../x", "a/../../x", "/etc/passwd", "C:/x", "a\\b", "a\x00b", "a//b", "a/./b", "", ".vidsync/db",
    "a/" + "n" * 256, "tab\there",
])
def test_refused_everywhere(tmp_path, path):
    with pytest.raises(UnsafePath):
        PathPolicy(str(tmp_path), case_insensitive=False, windows=False).check(path)


def test_accepted_paths_come_back_in_nfc(tmp_path):
    policy = PathPolicy(str(tmp_path), case_insensitive=False, windows=False)
    assert policy.check("été/cafe\u0301.txt") == "été/café.txt"
    assert policy.check("CON") == "CON"  # fine on Linux
    assert policy.check(".vidsyncignore") == ".vidsyncignore"


@pytest.mark.parametrize("path", ["CON", "clips/aux.mov", "nul.txt", "COM1", "name.", "trail ", "a:b", "q?"])
def test_windows_names(tmp_path, path):
    with pytest.raises(UnsafePath):
        PathPolicy(str(tmp_path), case_insensitive=False, windows=True).check(path)


def test_case_insensitive_reserved_folder(tmp_path):
    with pytest.raises(UnsafePath):
        PathPolicy(str(tmp_path), case_insensitive=True, windows=False).check(".VidSync/x")


def test_this_filesystem_is_case_sensitive(tmp_path):
    assert detect_case_insensitive(str(tmp_path)) is False


def test_names_differing_only_in_case_are_refused_on_a_folding_filesystem(tmp_path):
    contents = {b"first": None, b"second": None}
    digests = {hashlib.sha256(c).hexdigest(): c for c in contents}

    async def fetch(row, tmp, reuse, progress):
        with open(tmp, "wb") as f:  # noqa: ASYNC230 - a few bytes
            f.write(digests[row.hash])

    async def scenario() -> list[str]:
        root = tmp_path / "mirror"
        root.mkdir()
        state = MirrorState(root)
        applier = Applier(root, state, PathPolicy(str(root), case_insensitive=True, windows=False),
                          fetch, lambda *a: None)
        try:
            state.record_events([
                {"seq": 1, "change": {"path": "Clip.mov", "op": "create",
                                      "hash": hashlib.sha256(b"first").hexdigest(), "size": 5}},
                {"seq": 2, "change": {"path": "clip.MOV", "op": "create",
                                      "hash": hashlib.sha256(b"second").hexdigest(), "size": 6}}])
            return [await applier.apply(row) for row in state.pending()]
        finally:
            applier.close()
            state.close()

    assert asyncio.run(scenario()) == ["created", "refused"]
    assert (tmp_path / "mirror" / "Clip.mov").read_bytes() == b"first"
    assert not (tmp_path / "mirror" / "clip.MOV").exists()


def test_the_filesystem_type_is_that_of_the_innermost_mount():
    # Windows' name rules apply on FAT/exFAT/NTFS mounts; none can be mounted here, so this
    # checks the lookup on the mounts there are: /proc inside /.
    assert _fs_type("/proc/self") == "proc"
    assert _fs_type("/") not in (None, "proc")
