"""Reproduce the strict 3D test's calibration table (dreamer.shapes.strict_calibration): for each judged metric, the
worst value over the ground-truth cases that must pass and the best over each group that must fail; prints JSON.

    python scripts/calibrate_strict.py [--n 20000] [--threads 1]
"""
from __future__ import annotations

import argparse
import json

import torch

from dreamer.shapes import strict, strict_calibration


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20000, help="surface samples per mesh")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    thresholds = {"F_MIN": strict.F_MIN, "IOU_MIN": strict.IOU_MIN, "SCALE_MAX": strict.SCALE_MAX,
                  "FLOATER_MAX": strict.FLOATER_MAX}
    table = {k: {g: round(v, 4) for g, v in groups.items()} for k, groups in strict_calibration.calibrate(a.n).items()}
    print(json.dumps({"n": a.n, "thresholds": thresholds, "calibration": table}, indent=2))


if __name__ == "__main__":
    main()
