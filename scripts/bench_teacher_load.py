"""Time loading the embedded teacher in fresh interpreters (HF_HUB_OFFLINE=1), phase by phase; prints JSON.

Each repeat is a new `python` process: interpreter start, `import torch`, the diffusers / transformers / peft imports
the loader pulls in, `load_teacher()` itself (weights + scheduler + text encoder) and one prompt encoding.
`spawn_to_ready` (the target's measure) runs from spawning the process to the teacher being usable;
`process_total` adds the interpreter's exit (tearing down torch / diffusers modules).

    python scripts/bench_teacher_load.py --repeats 5
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CHILD = r"""
import json, time
t0 = time.time()
import torch
t1 = time.time()
import diffusers, transformers
from diffusers import UNet2DConditionModel, DDPMScheduler
from dreamer.common.teacher_source import load_teacher
t2 = time.time()
teacher = load_teacher()
t3 = time.time()
teacher.encode_prompt(["a red cube"])
t4 = time.time()
print(json.dumps({"import_torch": t1 - t0, "import_libraries": t2 - t1, "load_teacher": t3 - t2,
                  "first_prompt": t4 - t3, "ready_at": t4}))
"""


def one_run(threads: int) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(threads), "TQDM_DISABLE": "1"}
    start = time.time()
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
    total = time.time() - start
    phases = json.loads(out.stdout.strip().splitlines()[-1])
    ready = phases.pop("ready_at") - start  # spawn -> teacher loaded and one prompt encoded (no interpreter exit)
    return {**phases, "spawn_to_ready": ready, "process_total": total}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    runs = [one_run(a.threads) for _ in range(a.repeats)]
    keys = list(runs[0])
    summary = {k: round(statistics.median(r[k] for r in runs), 3) for k in keys}
    print(json.dumps({"repeats": a.repeats, "median_seconds": summary,
                      "max_spawn_to_ready": round(max(r["spawn_to_ready"] for r in runs), 3),
                      "max_process_total": round(max(r["process_total"] for r in runs), 3),
                      "target_seconds": 5.0, "meets_target": summary["spawn_to_ready"] < 5.0}, indent=1))


if __name__ == "__main__":
    main()
