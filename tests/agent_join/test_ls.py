"""``vidsync ls PROJECT``: a project's files, each frame sequence as one line."""

from __future__ import annotations

import json

from agent_join.helpers import viewer_token


def test_ls_shows_a_frame_sequence_as_one_line(owner, api, server, make_agent):
    for frame in [*range(1, 21), *range(23, 31)]:  # 28 frames, 21 and 22 missing
        owner.write(f"renders/sh010/sh010_comp.{frame:07d}.exr", b"x" * 100)
    owner.write("footage/A001_C004.mov", b"m" * 1000)
    owner.write("footage/A001_C005.mov", b"m" * 1000)
    owner.write("footage/A001_C006.mov", b"m" * 1000)
    owner.write("stills/ref.0001.png", b"p")  # two frames are not a sequence
    owner.write("stills/ref.0002.png", b"p")
    owner.publish()
    agent = make_agent(server, viewer_token(api))
    assert agent.run("join", "--once", "--", owner.invite(), str(agent.mirror)).returncode == 0

    out = agent.run("ls", owner.project_id)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 6, lines
    seq = next(line for line in lines if "sh010_comp" in line)
    assert seq.endswith("renders/sh010/sh010_comp.[0000001-0000030].exr  (28 frames, 2 missing)")
    assert seq.split()[0:2] == ["2.7", "KiB"]  # 28 x 100 B
    assert sum("footage/A001_C00" in line for line in lines) == 3  # clips stay one per line
    assert sum("stills/ref.000" in line for line in lines) == 2

    rows = [json.loads(line) for line in agent.run("ls", "film", "renders", "--json").stdout
            .splitlines()]
    assert rows == [{"path": "renders/sh010/sh010_comp.[0000001-0000030].exr", "frames": 28,
                     "missing": 2, "first": 1, "last": 30, "size": 2800,
                     "mtime": rows[0]["mtime"]}]
    frames = agent.run("ls", "film", "renders/", "--frames").stdout.splitlines()
    assert len(frames) == 28 and frames[0].endswith("renders/sh010/sh010_comp.0000001.exr")
