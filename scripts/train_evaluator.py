"""Train the shapes evaluator (shape + colour + reject heads) from scratch on GT renders and negatives.

python scripts/train_evaluator.py --out dreamer/assets/shapes-evaluator

Positives: GT renders of every catalogue entry from random views (plus a share re-rendered with jittered lighting),
lightly augmented. Negatives (reject target 1): tools.shapes_training.negatives, training variants. Reported on
fixed held-out sets: GT renders (other seed), held-out negatives (other seed AND kinds / shapes / colours never
trained on), GT renders with other lighting, and flat-shaded renders of marching-cubes meshes of the GT shapes.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tools/ (training-only, not installed)

from dreamer.shapes.evaluator import ShapesEvaluator, spec_targets  # noqa: E402
from dreamer.shapes.stats import wilson_interval  # noqa: E402
from dreamer.shapes.world import catalogue  # noqa: E402
from tools.shapes_training.evaluator_data import (Aug, augment, mesh_set, probe_images, relit_set,  # noqa: E402
                                                  render_set)
from tools.shapes_training.negatives import ELEV_RANGE, KINDS, make_negatives  # noqa: E402

# Training negatives per kind: few of the easy kinds, most of the hard ones (flat silhouettes, other colours).
NEG_COUNTS = {"blank": 300, "flat": 300, "noise": 300, "two_objects": 900, "crop": 900, "off_catalogue": 1200,
              "silhouette": 1500, "off_colour": 1200}


def _rate(flags: torch.Tensor) -> dict:
    """Proportion with n and a 95 % Wilson interval."""
    k, n = int(flags.sum()), len(flags)
    lo, hi = wilson_interval(k, n)
    return {"rate": round(k / n, 5), "k": k, "n": n, "wilson95": [round(lo, 5), round(hi, 5)]}


def gt_report(model: ShapesEvaluator, x: torch.Tensor, specs) -> dict:
    """On images of catalogue entries: correct (shape AND colour right AND not rejected), rejected, shape/colour."""
    ps, pc, rej = model.predict(x)
    ts, tc = spec_targets(specs)
    return {"correct": _rate((ps == ts) & (pc == tc) & ~rej), "rejected": _rate(rej),
            "shape_and_colour_ignoring_reject": _rate((ps == ts) & (pc == tc))}


def negative_report(model: ShapesEvaluator, x: torch.Tensor, kinds: list[str]) -> dict:
    rej = model.predict(x)[2]
    kk = list(dict.fromkeys(kinds))
    return {"rejected": _rate(rej),
            "per_kind": {k: _rate(rej[torch.tensor([q == k for q in kinds])]) for k in kk}}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="dreamer/assets/shapes-evaluator")
    ap.add_argument("--train-per-prompt", type=int, default=160)
    ap.add_argument("--relit-per-prompt", type=int, default=60, help="extra positives under jittered lighting")
    ap.add_argument("--negatives", default=",".join(f"{k}={v}" for k, v in NEG_COUNTS.items()),
                    help="training negatives per kind, kind=count,...")
    ap.add_argument("--test-per-prompt", type=int, default=60)
    ap.add_argument("--test-neg-per-kind", type=int, default=300, help="held-out negatives of each kind")
    ap.add_argument("--mesh-per-prompt", type=int, default=3, help="flat-shaded mesh renders per prompt (check)")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--reject-weight", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--test-seed", type=int, default=12345)
    ap.add_argument("--fresh-seed", type=int, default=4242,
                    help="a second held-out GT + negative set, generated after training")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--card-only", action="store_true", help="rewrite MODEL_CARD.md from OUT/training.json")
    args = ap.parse_args(argv)
    if args.card_only:
        summary = json.loads((Path(args.out) / "training.json").read_text())
        (Path(args.out) / "MODEL_CARD.md").write_text(_card(summary["command"], summary))
        return summary
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    t0 = time.time()

    # ---- training data: GT renders, relit GT renders, negatives (training variants)
    x_pos, specs_pos = render_set(args.train_per_prompt, args.seed)
    if args.relit_per_prompt:
        x_rl, specs_rl = relit_set(args.relit_per_prompt, args.seed + 1)
        x_pos, specs_pos = torch.cat([x_pos, x_rl]), specs_pos + specs_rl
    counts = {k: int(v) for k, v in (kv.split("=") for kv in args.negatives.split(","))}
    x_neg = torch.cat([make_negatives(c, seed=args.seed, kinds=[k])[0] for k, c in counts.items() if c])
    ys, yc = spec_targets(specs_pos)
    x_tr = torch.cat([x_pos, x_neg])
    ignore = torch.full((len(x_neg),), -100, dtype=torch.long)
    ys_tr, yc_tr = torch.cat([ys, ignore]), torch.cat([yc, ignore])
    yr_tr = torch.cat([torch.zeros(len(x_pos)), torch.ones(len(x_neg))])

    # ---- fixed held-out sets (other seeds; negatives also other kinds / shapes / colours)
    x_te, specs_te = render_set(args.test_per_prompt, args.test_seed)
    x_nte, kinds_nte = make_negatives(args.test_neg_per_kind * len(KINDS), seed=args.test_seed, held_out=True)
    x_nid, kinds_nid = make_negatives(args.test_neg_per_kind * len(KINDS), seed=args.test_seed, held_out=False)
    x_rte, specs_rte = relit_set(max(1, args.test_per_prompt // 4), args.test_seed + 1)
    x_mesh, specs_mesh = mesh_set(args.mesh_per_prompt, args.test_seed + 2) if args.mesh_per_prompt else (None, None)
    t_data = time.time() - t0
    print(f"data: {len(x_pos)} positives + {len(x_neg)} negatives for training; held-out {len(x_te)} GT, "
          f"{len(x_nte)} held-out negatives, {len(x_nid)} new-seed training-variant negatives, {len(x_rte)} relit GT, "
          f"{0 if x_mesh is None else len(x_mesh)} mesh renders ({t_data:.0f}s)", flush=True)

    model = ShapesEvaluator()
    steps = args.epochs * math.ceil(len(x_tr) / args.batch)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps, pct_start=0.15)
    g = torch.Generator().manual_seed(args.seed + 1)
    aug = Aug()
    for ep in range(args.epochs):
        model.train()
        perm = torch.randperm(len(x_tr), generator=g)
        tot, n = 0.0, 0
        for i in range(0, len(perm), args.batch):
            idx = perm[i:i + args.batch]
            xb = augment(x_tr[idx], aug, g)
            ls, lc, lr, _ = model.heads(xb)
            loss = args.reject_weight * F.binary_cross_entropy_with_logits(lr, yr_tr[idx])
            if (ys_tr[idx] >= 0).any():
                loss = loss + F.cross_entropy(ls, ys_tr[idx], label_smoothing=0.05, ignore_index=-100) + \
                    F.cross_entropy(lc, yc_tr[idx], label_smoothing=0.05, ignore_index=-100)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot, n = tot + loss.item() * len(idx), n + len(idx)
        r_gt, r_neg = gt_report(model, x_te, specs_te), negative_report(model, x_nte, kinds_nte)
        print(f"epoch {ep + 1}/{args.epochs} loss {tot / n:.4f} held-out GT correct {r_gt['correct']['rate']:.4f} "
              f"(rejected {r_gt['rejected']['rate']:.4f}), held-out negatives rejected "
              f"{r_neg['rejected']['rate']:.4f} ({time.time() - t0:.0f}s)", flush=True)

    model.eval()
    wall_train = time.time() - t0
    x_fr, specs_fr = render_set(args.test_per_prompt, args.fresh_seed)
    x_nfr, kinds_nfr = make_negatives(args.test_neg_per_kind * len(KINDS), seed=args.fresh_seed, held_out=True)
    x_te_aug = augment(x_te, aug, torch.Generator().manual_seed(7))
    probes = probe_images()
    summary = {
        "held_out_gt": gt_report(model, x_te, specs_te),
        "held_out_negatives": negative_report(model, x_nte, kinds_nte),
        "new_seed_training_variant_negatives": negative_report(model, x_nid, kinds_nid),
        "fresh_held_out_gt": gt_report(model, x_fr, specs_fr),
        "fresh_held_out_negatives": negative_report(model, x_nfr, kinds_nfr),
        "held_out_gt_augmented": gt_report(model, x_te_aug, specs_te),
        "held_out_gt_relit": gt_report(model, x_rte, specs_rte),
        "mesh_renders_flat_shaded": None if x_mesh is None else gt_report(model, x_mesh, specs_mesh),
        "probes_p_reject": {k: round(v, 4) for k, v in zip(probes, model.reject_prob(torch.stack(list(
            probes.values()))).tolist())},
        "reject_threshold": model.config.reject_threshold,
        "n_train_positives": len(x_pos), "n_train_relit": args.relit_per_prompt * len(catalogue()),
        "n_train_negatives": len(x_neg), "negatives_per_kind": args.negatives, "epochs": args.epochs,
        "train_seed": args.seed,
        "held_out_seed": args.test_seed, "fresh_seed": args.fresh_seed, "threads": args.threads,
        "data_time_s": round(t_data, 1), "wall_time_s": round(wall_train, 1),
    }
    model.save(args.out)
    cmd = "python " + " ".join(["scripts/train_evaluator.py"] + (sys.argv[1:] if argv is None else list(argv)))
    summary["command"] = cmd
    out = Path(args.out)
    (out / "training.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "MODEL_CARD.md").write_text(_card(cmd, summary))
    print(json.dumps(summary, indent=2))
    return summary


def _fmt(r: dict) -> str:
    return f"{r['rate']:.4f} ({r['k']}/{r['n']}; 95 % Wilson {r['wilson95'][0]:.4f}-{r['wilson95'][1]:.4f})"


def _card(cmd: str, s: dict) -> str:
    gt, neg, nid = s["held_out_gt"], s["held_out_negatives"], s["new_seed_training_variant_negatives"]
    fgt, fneg = s["fresh_held_out_gt"], s["fresh_held_out_negatives"]
    kinds = "\n".join(f"| {k} | {_fmt(neg['per_kind'][k])} | {_fmt(fneg['per_kind'][k])} | "
                      f"{_fmt(nid['per_kind'][k])} |" for k in neg["per_kind"])
    mesh = s["mesh_renders_flat_shaded"]
    mesh_line = "" if mesh is None else (
        f"- Flat-shaded (one lambert shade per triangle) renders of marching-cubes meshes of the GT shapes, a "
        f"stand-in for exported meshes: correct {_fmt(mesh['correct'])}, rejected {_fmt(mesh['rejected'])}\n")
    probes = "\n".join(f"| {k} | {v:.3f} |" for k, v in s["probes_p_reject"].items())
    seed, fresh = s["held_out_seed"], s["fresh_seed"]
    return f"""# shapes-evaluator

Small CNN (3 conv stages, 128-d penultimate features) with a shape head ({", ".join(catalogue_shapes())}),
a colour head and a **reject head** (one "none of the catalogue" logit, BCE), for 32x32 RGB renders in [0,1] on a
white background. Used by `dreamer.shapes.evaluator` for prompt accuracy (a rejected image counts as wrong), reject
rate, Frechet shapes distance (FSD) on the 128-d features, and per-prompt diversity.
`predict(images) -> (shape, colour, rejected)`; rejected when sigmoid(reject logit) > {s["reject_threshold"]}.

Trained from scratch on ground-truth renders of the shapes world (`render_shapes` + `random_views`, elevation
{ELEV_RANGE}) plus {s["n_train_relit"]} renders under jittered lighting (ambient 0.2-0.5, light direction moved),
with light augmentation (shift, scale, flip, brightness/channel gain, saturation, noise, blur), against
{s["n_train_negatives"]} negatives from `tools.shapes_training.negatives` (training variants: blank and flat frames;
flat discs, off-axis squares and triangles, and flat-filled sphere/cylinder/cone/torus outlines; noise; two objects;
cut-off crops; ellipsoids, capsules, bumpy spheres, bars, plates, star prisms; catalogue shapes in grey, black, white,
cyan, pink and random colours far from the catalogue's), augmented the same way.

- Command: `{cmd}`
- Wall time: {s["wall_time_s"]} s on {s["threads"]} CPU thread(s) (data {s["data_time_s"]} s included)
- Train set: {s["n_train_positives"]} positives (seed {s["train_seed"]}), {s["n_train_negatives"]} negatives
  ({s["negatives_per_kind"]}), {s["epochs"]} epochs

## Held-out figures (rates with k/n and 95 % Wilson intervals)

Two fixed held-out sets. Seed {s["held_out_seed"]} was watched while the negatives and the recipe were
developed (model selection); seed {s["fresh_seed"]} is generated after training and was looked at only for the
shipped model. Held-out negatives use other random streams AND held-out variants never trained on: vignettes,
two-colour gradients, flat ellipses/hexagons/stars/rings and mean-colour-filled outlines, salt-and-pepper /
stripes / checkerboard / multi-octave noise, up to three objects, a wider crop zoom, jacks / dumbbells / snowmen /
arches, catalogue shapes in silver / teal / magenta / lime / sky blue.

- GT renders, random views, seed {s["held_out_seed"]}: **correct (shape AND colour right, not rejected)
  {_fmt(gt['correct'])}**; rejected {_fmt(gt['rejected'])}; right ignoring the reject head
  {_fmt(gt['shape_and_colour_ignoring_reject'])}
- GT renders, seed {s["fresh_seed"]}: **correct {_fmt(fgt['correct'])}**; rejected {_fmt(fgt['rejected'])}
- Held-out negatives, seed {s["held_out_seed"]}: **rejected {_fmt(neg['rejected'])}**
- Held-out negatives, seed {s["fresh_seed"]}: **rejected {_fmt(fneg['rejected'])}**
- Training-variant negatives, new seed {s["held_out_seed"]}: rejected {_fmt(nid['rejected'])}
- GT renders augmented as in training: correct {_fmt(s['held_out_gt_augmented']['correct'])}, rejected
  {_fmt(s['held_out_gt_augmented']['rejected'])}
- GT shapes under other lighting (ambient 0.2-0.5, light moved): correct {_fmt(s['held_out_gt_relit']['correct'])},
  rejected {_fmt(s['held_out_gt_relit']['rejected'])}
{mesh_line}
| kind | held-out, seed {seed} | held-out, seed {fresh} | training variants, seed {seed} |
|---|---|---|---|
{kinds}

Probes, p(reject):

| image (32x32, white background) | p(reject) |
|---|---|
{probes}

## Caveats

- A cube or pyramid seen (nearly) face-on renders as a flat polygon (a flat square, a
  flat triangle). Those are catalogue views and are accepted, so an axis-aligned flat square of a
  cube's size (about 15-22 px) in a catalogue colour is accepted as a cube (see the probes); squares at other sizes
  or rotated, flat discs and flat-filled round outlines are rejected. The negatives leave out the ambiguous
  poses on purpose (`tools/shapes_training/negatives.py`).
- The weakest held-out kind is `off_colour`: of the five unseen colours, silver, teal, magenta and sky blue are
  rejected, lime (0.55, 0.90, 0.15) is not - it is taken for green (whether lime is "green" is debatable; it sits at
  the edge of the off-colour margin, `negatives.COLOUR_MARGIN`). Next come out-of-catalogue solids (in a
  200-per-solid check: about 7 % of arches and bumpy spheres and 3 % of ellipsoids and snowmen are accepted) and
  flat silhouettes.
- Seed 12345 guided three rounds of changes to the negatives and the recipe; the seed-4242 figures are the
  untouched ones. Wall time depends on the load of the (shared) machine.
- Features (FSD, diversity) come from a new network: numbers are not comparable with ones measured with the
  previous weights (no reject head).
- Files: `model.safetensors`, `config.json`, `training.json` (all figures)
"""


def catalogue_shapes() -> list[str]:
    return sorted({s.shape for s in catalogue()}, key=[s.shape for s in catalogue()].index)


if __name__ == "__main__":
    main()
