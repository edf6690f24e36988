"""`dreamer generate --prompts`: bad files refused up front, the claim queue, two worker processes doing every prompt
exactly once, and a worker killed mid-prompt whose prompt a re-run resumes without redoing the others."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dreamer.cli import main
from dreamer.common.workqueue import WorkQueue

ROOT = Path(__file__).resolve().parents[3]
TINY = ["train.steps=2", "camera.resolution=16", "camera.batch=1", "gaussians.n_init=100", "train.threads=1",
        "export.evaluate=false", "export.textured=false", "export.mesh_resolution=16", "export.turntable_frames=2",
        "export.turntable_resolution=16", "train.preview_every=0"]
SIX = ["a red cube", "a blue sphere", "a green torus", "a yellow cone", "a purple cylinder", "a orange pyramid"]


def _cli(prompts: Path, out: Path, env_extra: dict | None = None, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    return subprocess.Popen([sys.executable, "-m", "dreamer", "generate", "--prompts", str(prompts), "--out",
                             str(out), *TINY], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, **kw)


def _finish(p: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, err


@pytest.mark.parametrize("content, needle", [
    (None, "not found"), (b"", "holds no prompts"), (b"\n# only a comment\n  \n", "holds no prompts"),
    (b"a red cube\n\x00\x01\x02binary\n", "not UTF-8 text"), (b"\xff\xfe\xfa junk", "not UTF-8 text"),
    (b'a red cube\n{"prompt": "a blue cube", "overrides": ["train.stepz=3"]}\n', ":2: unknown key 'train.stepz'"),
    (b'a red cube\n{"prompt": "a blue cube", "overrides": ["nokeyvalue"]}\n', ":2: malformed override"),
    (b'a red cube\n{"prompt": "a blue cube"\n', ":2: not valid JSON"),
    (b'{"prompt": "a blue cube", "seed": 3}\n', "unknown field 'seed'"),
    (b"a red cube\na red cube\n", ":2: repeats line 1"),
    (b"a red cube\na banana phone\n", ":2: the embedded teacher does not know"),
])
def test_a_bad_prompts_file_is_one_line_and_exit_2_before_anything_runs(tmp_path, capsys, content, needle):
    f = tmp_path / "prompts.txt"
    if content is not None:
        f.write_bytes(content)
    out = tmp_path / "batch"
    assert main(["generate", "--prompts", str(f), "--out", str(out), "--quiet", *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dreamer: error: ") and needle in err[0], err
    assert not out.exists()                           # nothing ran, nothing was created


def test_claims_are_exclusive_and_only_a_dead_local_holder_is_taken_over(tmp_path):
    a, b = WorkQueue(tmp_path, "a"), WorkQueue(tmp_path, "b")
    c = a.try_claim("p")
    assert c is not None and c.attempt == 1
    assert b.try_claim("p") is None                   # held by a live process (this one)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "q.claim.1").write_text(json.dumps({"worker": "x", "pid": dead.pid, "host": a.host}))
    (tmp_path / "r.claim.1").write_text(json.dumps({"worker": "y", "pid": dead.pid, "host": "elsewhere"}))
    taken = b.try_claim("q")
    assert taken is not None and taken.attempt == 2   # stale claim of a dead process on this host
    assert a.try_claim("q") is None                   # ... and only one worker gets it
    assert b.try_claim("r") is None                   # another host's claim is never taken over
    a.set_status(c, "done", seconds=1.0)
    assert b.try_claim("p") is None and a.view("p")["status"] == "done"
    b.set_status(taken, "failed", error="boom")
    assert a.try_claim("q") is None                   # failed by a peer in this batch: not retried now
    later = WorkQueue(tmp_path, "c")                  # a re-run (started after the failure) retries it
    assert later.try_claim("q").attempt == 3
    empty = tmp_path / "s.claim.1"                    # a claimer died between creating and filling its file
    empty.touch()
    assert a.try_claim("s") is None                   # (or is filling it right now)
    os.utime(empty, (time.time() - 120, time.time() - 120))
    assert a.try_claim("s").attempt == 2


def _rows(out: Path) -> dict:
    return {r["prompt"]: r for r in json.loads((out / "manifest.json").read_text())["prompts"]}


def test_two_workers_do_every_prompt_exactly_once(tmp_path):
    f = tmp_path / "prompts.txt"
    f.write_text("\n".join(SIX[:5]) + "\n" + json.dumps({"prompt": SIX[5], "overrides": ["train.steps=3"]}) + "\n")
    out = tmp_path / "batch"
    procs = [_cli(f, out), _cli(f, out)]
    results = [_finish(p) for p in procs]
    assert [r[0] for r in results] == [0, 0], [r[2][-2000:] for r in results]
    rows = _rows(out)
    assert sorted(rows) == sorted(SIX) and all(r["status"] == "done" and r["attempt"] == 1 for r in rows.values())
    for prompt, r in rows.items():
        run = out / r["run"]
        assert sorted(p.name for p in (out / "manifest").glob(f"{r['run']}.claim.*")) == [f"{r['run']}.claim.1"]
        timing = json.loads((run / "timing.json").read_text())
        assert timing["sittings"] == 1 and timing["steps"] == (3 if prompt == SIX[5] else 2)  # trained once
        assert (run / "report.html").is_file() and f'href="{r["run"]}/report.html"' in (out / "index.html").read_text()
    assert len({r["worker"] for r in rows.values()}) <= 2
    last_table = results[0][1] if results[0][1].count("done") >= results[1][1].count("done") else results[1][1]
    assert all(p in last_table for p in SIX)
    assert "batch: " in results[0][2] + results[1][2] and "prompts finished" in results[0][2] + results[1][2]


def test_a_worker_killed_mid_prompt_is_resumed_by_a_rerun_and_nothing_else_is_redone(tmp_path):
    f = tmp_path / "prompts.txt"
    long = {"prompt": "a blue sphere", "overrides": ["train.steps=8", "train.checkpoint_every=2"]}
    f.write_text("a red cube\n" + json.dumps(long) + "\na green torus\n")
    out = tmp_path / "batch"
    # SIGKILL (kill -9) right after the 2nd checkpoint save of a run: the red cube saves once, so this is the
    # sphere at step 4 of 8
    code, _, err = _finish(_cli(f, out, {"DREAMER_KILL_AT": "after-rename@2"}))
    assert code == -9, err[-2000:]
    q = WorkQueue(out / "manifest", "reader")
    assert q.status("a-red-cube")["status"] == "done"
    assert q.status("a-blue-sphere")["status"] == "running"                 # the dead worker's last word
    assert q.view("a-blue-sphere")["status"] == "failed" and "interrupted" in q.view("a-blue-sphere")["error"]
    assert q.status("a-green-torus")["status"] == "pending"
    cube_before = (out / "manifest" / "a-red-cube.json").read_text()
    cube_mtime = (out / "a-red-cube" / "metrics.json").stat().st_mtime_ns
    time.sleep(0.05)
    code, table, err = _finish(_cli(f, out))
    assert code == 0, err[-2000:]
    rows = _rows(out)
    assert all(r["status"] == "done" for r in rows.values()), rows
    assert (out / "manifest" / "a-red-cube.json").read_text() == cube_before          # not redone
    assert (out / "a-red-cube" / "metrics.json").stat().st_mtime_ns == cube_mtime
    assert rows["a blue sphere"]["attempt"] == 2 and rows["a green torus"]["attempt"] == 1
    sphere = json.loads((out / "a-blue-sphere" / "timing.json").read_text())
    assert sphere["sittings"] == 2 and sphere["steps"] == 8                  # continued from its checkpoint
    assert "a blue sphere -> a-blue-sphere" in table


def test_under_torchrun_each_rank_works_its_shard_only(tmp_path, monkeypatch, capsys):
    """RANK=1 of WORLD_SIZE=2 (what torchrun sets): prompts 2, 4 of the file, no collective, nothing else touched."""
    f = tmp_path / "prompts.txt"
    f.write_text("\n".join(SIX[:4]) + "\n")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    out = tmp_path / "batch"
    assert main(["generate", "--prompts", str(f), "--out", str(out), "--quiet", "--no-export", *TINY]) == 0
    rows = _rows(out)
    assert [rows[p]["status"] for p in SIX[:4]] == ["pending", "done", "pending", "done"]
    assert rows[SIX[1]]["worker"].startswith("rank1@")
    assert "pending" in capsys.readouterr().out
