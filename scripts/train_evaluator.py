"""Train the shapes evaluator (shape + colour + reject heads) from scratch on GT renders and negatives.

python scripts/train_evaluator.py --out dreamer/assets/shapes-evaluator

Positives: GT renders of every catalogue entry from random views (plus a share re-rendered with jittered lighting),
lightly augmented. Negatives (reject target 1): dreamer.shapes.negatives, training variants. Reported on fixed
held-out sets: GT renders (other seed), held-out negatives (other seed AND kinds / shapes / colours never trained
on), GT renders with other lighting, and flat-shaded renders of marching-cubes meshes of the GT shapes.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from dreamer.shapes.evaluator import ShapesEvaluator, spec_targets
from dreamer.shapes.stats import wilson_interval
from dreamer.shapes.negatives import KINDS, make_negatives, render_catalogue
from dreamer.shapes.render import AMBIENT, random_views, render_shapes
from dreamer.shapes.world import SHAPES, catalogue, sdf

ELEV_RANGE = (-10.0, 80.0)
# Training negatives per kind: few of the easy kinds, most of the hard ones (flat silhouettes, other colours).
NEG_COUNTS = {"blank": 300, "flat": 300, "noise": 300, "two_objects": 900, "crop": 900, "off_catalogue": 1200,
              "silhouette": 1500, "off_colour": 1200}


@dataclass
class Aug:
    """Light augmentation so the classifier tolerates imperfect generated images."""

    shift_px: float = 2.0      # max translation, pixels
    scale: float = 0.12        # scale jitter +-
    gain: float = 0.12         # brightness gain jitter +-
    chan: float = 0.05         # per-channel gain jitter +-
    sat: float = 0.15          # saturation jitter +- (mix with the pixel's grey level)
    noise: float = 0.05        # max gaussian noise std (applied with p=0.5)
    p_blur: float = 0.3        # probability of a small gaussian blur
    p_flip: float = 0.5        # horizontal flip


def render_set(n_per_prompt: int, seed: int, res: int = 32, chunk: int = 432):
    """GT renders of every catalogue prompt: images [N,3,res,res], specs (len N)."""
    g = torch.Generator().manual_seed(seed)
    specs = catalogue() * n_per_prompt
    imgs = []
    for i in range(0, len(specs), chunk):
        sub = specs[i:i + chunk]
        v = random_views(len(sub), g, elev_range=ELEV_RANGE)
        imgs.append(render_shapes(sub, v["elev"], v["azim"], v["dist"], v["fov"], res=res)[0])
    return torch.cat(imgs), specs


def _blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-image 3x3 gaussian blur of x [B,3,H,W] with std sigma [B] (replicate padding)."""
    t = torch.tensor([-1.0, 0.0, 1.0])
    k1 = torch.exp(-t[None] ** 2 / (2 * sigma[:, None] ** 2))
    k1 = k1 / k1.sum(-1, keepdim=True)                       # [B,3]
    k = (k1[:, :, None] * k1[:, None, :])                    # [B,3,3]
    B, C, H, W = x.shape
    xp = F.pad(x.reshape(1, B * C, H, W), (1, 1, 1, 1), mode="replicate")
    return F.conv2d(xp, k.repeat_interleave(C, 0)[:, None], groups=B * C).reshape(B, C, H, W)


def augment(x: torch.Tensor, aug: Aug, g: torch.Generator) -> torch.Tensor:
    """Random shift/scale (white fill), flip, colour/brightness/saturation jitter, noise and blur; x [B,3,H,W]."""
    B, _, H, _ = x.shape
    u = lambda *s: torch.rand(*s, generator=g)  # noqa: E731
    s = 1 + aug.scale * (2 * u(B) - 1)
    flip = torch.where(u(B) < aug.p_flip, -1.0, 1.0)
    t = aug.shift_px * 2 / H * (2 * u(B, 2) - 1)
    theta = torch.zeros(B, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = flip / s, 1 / s
    theta[:, :, 2] = t
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = 1 - F.grid_sample(1 - x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    gain = (1 + aug.gain * (2 * u(B, 1, 1, 1) - 1)) * (1 + aug.chan * (2 * u(B, 3, 1, 1) - 1))
    x = (x * gain).clamp(0, 1)
    grey = x.mean(1, keepdim=True)
    x = (grey + (x - grey) * (1 + aug.sat * (2 * u(B, 1, 1, 1) - 1))).clamp(0, 1)
    blur = u(B) < aug.p_blur
    if blur.any():
        x[blur] = _blur(x[blur], 0.4 + 0.6 * u(int(blur.sum())))
    sd = aug.noise * u(B, 1, 1, 1) * (u(B, 1, 1, 1) < 0.5)
    return (x + sd * torch.randn(x.shape, generator=g)).clamp(0, 1)


def relit_set(n_per_prompt: int, seed: int, res: int = 32, ambient=(0.2, 0.5), light_up=(-0.5, 0.4),
              light_right=(-0.5, 0.5)):
    """GT shapes and colours under other lighting (ambient, light direction): images, specs."""
    g = torch.Generator().manual_seed(seed)
    specs = catalogue() * n_per_prompt
    n = len(specs)
    v = random_views(n, g, elev_range=ELEV_RANGE)
    u = lambda lo_hi: lo_hi[0] + (lo_hi[1] - lo_hi[0]) * torch.rand(n, generator=g)  # noqa: E731
    off = torch.stack([u(light_up), u(light_right)], -1)
    return render_catalogue(specs, v, res, ambient=u(ambient), light_offset=off)[0], specs


def _mc_mesh(shape: str, cells: int = 36, half: float = 0.62):
    """Marching-cubes mesh of a GT SDF (like an exported mesh): vertices [V,3], faces [F,3]."""
    from skimage.measure import marching_cubes

    t = torch.linspace(-half, half, cells + 1)
    grid = sdf(shape, torch.stack(torch.meshgrid(t, t, t, indexing="ij"), -1)).numpy()
    verts, faces, _, _ = marching_cubes(grid, 0.0, spacing=(2 * half / cells,) * 3)
    return torch.tensor(verts - half, dtype=torch.float32), torch.tensor(faces.copy(), dtype=torch.long)


def mesh_set(n_per_prompt: int, seed: int, res: int = 32, supersample: int = 2):
    """Flat-shaded (one lambert shade per triangle) ray-cast renders of marching-cubes meshes of the GT shapes,
    lit as the GT renders: images, specs. A stand-in for renders of exported meshes."""
    from renderers.cameras import orbit_cameras, rays_from_cameras

    g = torch.Generator().manual_seed(seed)
    specs = catalogue() * n_per_prompt
    v = random_views(len(specs), g, elev_range=ELEV_RANGE)
    hi = res * supersample
    cams = orbit_cameras(v["elev"], v["azim"], v["dist"], v["fov"], hi, hi)
    origins, dirs = rays_from_cameras(cams)
    meshes = {s: _mc_mesh(s) for s in SHAPES}
    out = torch.ones(len(specs), 3, hi, hi)
    for b, spec in enumerate(specs):
        verts, faces = meshes[spec.shape]
        v0, v1, v2 = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
        e1, e2 = v1 - v0, v2 - v0
        o, d = origins[b, 0, 0], dirs[b].reshape(-1, 3)
        cr = torch.cross(e1, e2, dim=-1)
        outward = 1.0 if float((cr * (v0 + v1 + v2)).sum()) > 0 else -1.0   # sum = 6 x volume when outward
        front = (outward * cr * (v0 - o)).sum(-1) < 0                        # back faces are hidden (closed mesh)
        v0, e1, e2 = v0[front], e1[front], e2[front]
        tvec = o - v0
        qvec = torch.cross(tvec, e1, dim=-1)                           # Moller-Trumbore, camera-constant parts
        det = d @ torch.cross(e2, e1, dim=-1).T                         # e1 . (d x e2) = d . (e2 x e1)
        u = d @ torch.cross(e2, tvec, dim=-1).T                         # tvec . (d x e2) = d . (e2 x tvec)
        w = d @ qvec.T
        t = (e2 * qvec).sum(-1)[None]
        ok = det.abs() > 1e-9
        inv = torch.where(ok, 1 / torch.where(ok, det, torch.ones(())), torch.zeros(()))
        u, w, t = u * inv, w * inv, t * inv
        valid = ok & (u >= 0) & (w >= 0) & (u + w <= 1) & (t > 1e-4)
        t = torch.where(valid, t, torch.full((), math.inf))
        tmin, fi = t.min(-1)
        hit = torch.isfinite(tmin)
        n = torch.nn.functional.normalize(torch.cross(e1, e2, dim=-1)[fi], dim=-1)
        n = torch.where(((n * d).sum(-1, keepdim=True) > 0), -n, n)   # two-sided: face the camera
        right, up, fwd = cams.c2w[b, :3, 0], cams.c2w[b, :3, 1], -cams.c2w[b, :3, 2]
        light = torch.nn.functional.normalize(-fwd + 0.6 * up - 0.4 * right, dim=-1)
        shade = AMBIENT + (1 - AMBIENT) * (n @ light).clamp(min=0)
        col = torch.where(hit[:, None], torch.tensor(spec.rgb) * shade[:, None], torch.ones(()))
        out[b] = col.clamp(0, 1).reshape(hi, hi, 3).permute(2, 0, 1)
    return F.avg_pool2d(out, supersample), specs


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


def probe_images(res: int = 32) -> dict[str, torch.Tensor]:
    """Hand-made probes: blank, flat squares (axis-aligned: what a cube seen exactly face-on renders as, when of
    a cube's size ~15-22 px and shade 0.88 x its colour), a rotated square, flat discs, uniform noise."""
    from dreamer.shapes.world import COLOURS

    t = torch.arange(res) + 0.5 - res / 2
    red, blue = torch.tensor(COLOURS["red"])[:, None, None], torch.tensor(COLOURS["blue"])[:, None, None]
    fill = lambda inside, c: torch.where(inside, c, torch.ones(()))  # noqa: E731

    def sq(side: float, deg: float = 0.0) -> torch.Tensor:
        c, sn = math.cos(math.radians(deg)), math.sin(math.radians(deg))
        u, v = c * t[None, :] + sn * t[:, None], c * t[:, None] - sn * t[None, :]
        return fill(torch.maximum(u.abs(), v.abs()) <= side / 2, red)

    disc = lambda r: fill(t[:, None] ** 2 + t[None, :] ** 2 <= r * r, blue)  # noqa: E731
    return {"blank white": torch.ones(3, res, res),
            **{f"flat red square {s}px": sq(s) for s in (8, 12, 16, 20, 24, 28)},
            "flat red square 18px rotated 30deg": sq(18, 30.0),
            "flat red square 18px rotated 45deg": sq(18, 45.0),
            **{f"flat blue disc r{r}px": disc(r) for r in (5, 8, 11, 14)},
            "uniform noise": torch.rand(3, res, res, generator=torch.Generator().manual_seed(0))}


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
        "reject_threshold": model.cfg.reject_threshold,
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
{s["n_train_negatives"]} negatives from `dreamer.shapes.negatives` (training variants: blank and flat frames; flat
discs, off-axis squares and triangles, and flat-filled sphere/cylinder/cone/torus outlines; noise; two objects; cut-off
crops; ellipsoids, capsules, bumpy spheres, bars, plates, star prisms; catalogue shapes in grey, black, white, cyan,
pink and random colours far from the catalogue's), augmented the same way.

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

- A cube or pyramid seen (nearly) face-on renders as a flat polygon: about 1 in 5 of their random views here (a
  flat square, a flat triangle). Those are catalogue views and are accepted, so an axis-aligned flat square of a
  cube's size (about 15-22 px) in a catalogue colour is accepted as a cube (see the probes); squares at other sizes
  or rotated, flat discs and flat-filled round outlines are rejected. The negatives leave out the ambiguous
  poses on purpose (`dreamer/shapes/negatives.py`).
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
