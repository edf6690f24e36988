"""A work queue on a shared filesystem: one status file per item and atomic claim files, so several processes (and
several machines sharing the folder) work one list without doing an item twice.

Layout of a manifest folder (DIR/manifest/):
  <key>.claim.<n>  attempt n of item <key>, created with os.open(O_CREAT | O_EXCL): exactly one process wins it;
                   holds {"worker", "pid", "host", "started"}. The highest n is the current attempt.
  <key>.json       the item's status {"status": running | done | failed, "attempt", "worker", "seconds", ...},
                   written atomically (temp file + rename) by the holder of the current attempt only.
An item is free to claim when it has no claim, or its current attempt failed before this worker started (a re-run
retries failures, a worker does not retry one a peer failed in the same batch), or its holder is a dead process on
this host (kill -9), or its claim file is still empty after EMPTY_CLAIM_S (its writer died creating it). A claim
held by another host is never taken over: this host cannot tell whether that process lives; delete the claim file
by hand to release it.
"""
from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

STATUSES = ("pending", "running", "done", "failed")
EMPTY_CLAIM_S = 60.0                     # an empty claim file older than this is taken over


def host() -> str:
    return socket.gethostname()


def pid_alive(pid: int) -> bool:
    """A process with this id exists on this host (signal 0 probes without signalling)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:          # exists, owned by someone else
        return True
    return True


def write_json_atomic(path: Path, data: dict) -> None:
    """Temp file in the same folder + rename: readers see the old or the new file, never half of one."""
    tmp = path.with_name(f".{path.name}.{host()}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


@dataclass
class Claim:
    """This worker's hold on attempt `attempt` of item `key`."""

    key: str
    attempt: int


class WorkQueue:
    """Claims and statuses of the items in `folder` for one worker (`worker`: a name in claims and statuses)."""

    def __init__(self, folder: str | Path, worker: str):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.worker, self.pid, self.host = worker, os.getpid(), host()
        self.started = time.time()

    def attempts(self, key: str) -> list[int]:
        """Attempt numbers claimed so far for `key`, ascending."""
        n = len(key) + len(".claim.")
        return sorted(int(p.name[n:]) for p in self.folder.glob(f"{key}.claim.*") if p.name[n:].isdigit())

    def status(self, key: str) -> dict:
        """The item's status record ({"status": "pending"} if none yet)."""
        return read_json(self.folder / f"{key}.json") or {"status": "pending"}

    def _free(self, key: str, attempt: int) -> tuple[bool, str]:
        """(may attempt `attempt` + 1 be claimed, why not)."""
        st = self.status(key)
        if st.get("attempt") == attempt and st["status"] == "done":
            return False, "done"
        if st.get("attempt") == attempt and st["status"] == "failed":
            failed_before = float(st.get("finished", 0)) < self.started
            return failed_before, "failed in this batch by a peer"
        claim = self.folder / f"{key}.claim.{attempt}"
        holder = read_json(claim) or {}
        if not holder:                   # a writer died between creating and filling it (or is filling it now)
            try:
                return time.time() - claim.stat().st_mtime > EMPTY_CLAIM_S, "being claimed"
            except OSError:
                return False, "being claimed"
        if holder.get("host") != self.host:
            return False, f"held by {holder.get('worker')} on {holder.get('host')}"
        if int(holder.get("pid", -1)) == self.pid or pid_alive(int(holder.get("pid", -1))):
            return False, f"held by running {holder.get('worker')} (pid {holder.get('pid')})"
        return True, "stale"             # a dead process on this host held it: take over

    def try_claim(self, key: str) -> Claim | None:
        """Claim the next attempt of `key` (None: done, or held by a live / remote worker, or lost the race)."""
        done = self.attempts(key)
        if done and not self._free(key, done[-1])[0]:
            return None
        attempt = (done[-1] if done else 0) + 1
        try:
            fd = os.open(self.folder / f"{key}.claim.{attempt}", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:         # another worker won this attempt
            return None
        with os.fdopen(fd, "w") as f:
            json.dump({"worker": self.worker, "pid": self.pid, "host": self.host, "started": time.time()}, f)
        return Claim(key, attempt)

    def set_status(self, claim: Claim, status: str, **fields) -> None:
        """Record the claimed item's status (only the holder of the current attempt writes it)."""
        assert status in STATUSES, status
        rec = {"status": status, "attempt": claim.attempt, "worker": self.worker, "host": self.host,
               "pid": self.pid, **fields}
        if status in ("done", "failed"):
            rec["finished"] = time.time()
        write_json_atomic(self.folder / f"{claim.key}.json", rec)

    def view(self, key: str) -> dict:
        """The status as a reader should see it: a 'running' record whose holder died reads as 'interrupted'."""
        st = dict(self.status(key))
        if st["status"] == "running" and st.get("host") == self.host and not pid_alive(int(st.get("pid", -1))):
            st["status"], st["error"] = "failed", "interrupted (worker died); a re-run resumes it"
        return st
