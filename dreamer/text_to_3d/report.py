"""Self-contained HTML run report: metrics, SVG loss curves, previews, turntable and an embedded WebGL GLB viewer."""
from __future__ import annotations

import base64
import html
import math
from pathlib import Path

VIEWER_JS = Path(__file__).resolve().parents[1] / "assets" / "report" / "viewer.js"
MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif", ".webp": "image/webp"}
PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2"]
MAX_POINTS = 600  # loss curves are decimated to at most this many points

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; background: #f6f7f9; color: #1f2937; }
main { max-width: 1100px; margin: 0 auto; padding: 20px 24px 40px; }
h1 { font-size: 22px; margin: 0 0 14px; } h2 { font-size: 16px; margin: 22px 0 8px; }
.top { display: flex; gap: 20px; flex-wrap: wrap; align-items: flex-start; }
.card { background: #fff; border: 1px solid #e5e7eb; border-radius: 8px; padding: 12px; }
.viewer { position: relative; flex: 1 1 520px; }
.viewer canvas { width: 100%; height: 460px; display: block; border-radius: 6px; cursor: grab; touch-action: none; }
.viewer .hint { color: #6b7280; font-size: 12px; margin-top: 6px; }
.viewer-msg { padding: 40px 16px; text-align: center; color: #b91c1c; }
table { border-collapse: collapse; min-width: 260px; }
td { padding: 3px 10px; border-bottom: 1px solid #f0f1f3; vertical-align: top; }
td.k { color: #4b5563; } td.v { font-family: ui-monospace, monospace; text-align: right; }
.curves, .gallery { display: flex; flex-wrap: wrap; gap: 12px; }
.gallery figure { margin: 0; } .gallery img { max-width: 100%; image-rendering: pixelated; display: block; }
figcaption { color: #6b7280; font-size: 12px; margin-top: 4px; } .muted { color: #6b7280; }
svg text { font: 11px system-ui, sans-serif; fill: #4b5563; }
"""


def _data_uri(path: Path) -> str:
    """File -> base64 data URI."""
    mime = MIME.get(path.suffix.lower(), "application/octet-stream")
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _fmt(v) -> str:
    """Compact number / value formatting for tables and axes."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    return f"{v:.4g}" if math.isfinite(v) else str(v)


def _tick(v: float) -> str:
    """Short axis label."""
    return f"{v:.3g}"


def _flatten(d: dict, prefix: str = "") -> list[tuple[str, object]]:
    """Nested dict -> [(dotted key, value)]."""
    rows = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        rows += _flatten(v, key + ".") if isinstance(v, dict) else [(key, v)]
    return rows


def metrics_table(summary: dict) -> str:
    """Summary dict -> HTML table."""
    if not summary:
        return '<p class="muted">no metrics</p>'
    rows = "".join(f'<tr><td class="k">{html.escape(k)}</td><td class="v">{html.escape(_fmt(v))}</td></tr>'
                   for k, v in _flatten(summary))
    return f"<table>{rows}</table>"


def _smooth(values: list[float], half: int) -> list[float]:
    """Centred moving average with window 2*half+1 (shrinks at the ends; no lag)."""
    csum = [0.0]
    for v in values:
        csum.append(csum[-1] + v)
    n = len(values)
    return [(csum[min(n, i + half + 1)] - csum[max(0, i - half)]) / (min(n, i + half + 1) - max(0, i - half))
            for i in range(n)]


def loss_svg(name: str, values: list[float], color: str = PALETTE[0], width: int = 340, height: int = 190) -> str:
    """One loss series -> inline SVG chart (raw polyline faint, moving-average polyline bold, log-y if wide range)."""
    pts = [(i, float(v)) for i, v in enumerate(values) if v is not None and math.isfinite(float(v))]
    title = f'<text x="{width / 2}" y="14" text-anchor="middle" font-weight="600">{html.escape(name)}</text>'
    if len(pts) < 2:
        msg = '<text x="20" y="90">not enough finite values to plot</text>'
        return f'<svg class="loss" width="{width}" height="{height}" viewBox="0 0 {width} {height}">{title}{msg}</svg>'
    step = max(1, math.ceil(len(pts) / MAX_POINTS))
    pts = pts[::step] + ([pts[-1]] if (len(pts) - 1) % step else [])
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    log = min(ys) > 0 and max(ys) / min(ys) > 1e3
    ty = [math.log10(y) for y in ys] if log else ys
    lo, hi = min(ty), max(ty)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    pad = 0.05 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    left, right, top, bottom = 62, width - 10, 22, height - 24
    sx = lambda x: left + (x - xs[0]) / max(1, xs[-1] - xs[0]) * (right - left)
    sy = lambda y: bottom - (y - lo) / (hi - lo) * (bottom - top)
    line = lambda seq: " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(xs, seq))
    smooth = _smooth(ty, half=len(ty) // 40)
    axes = (f'<path d="M{left},{top} V{bottom} H{right}" fill="none" stroke="#9ca3af"/>'
            f'<text x="{left - 4}" y="{sy(max(ty)) + 4:.1f}" text-anchor="end">{_tick(max(ys))}</text>'
            f'<text x="{left - 4}" y="{sy(min(ty)) + 4:.1f}" text-anchor="end">{_tick(min(ys))}</text>'
            f'<text x="{left}" y="{height - 8}">{xs[0]}</text>'
            f'<text x="{right}" y="{height - 8}" text-anchor="end">step {xs[-1]}</text>'
            + (f'<text x="{right}" y="{top + 8}" text-anchor="end">log scale</text>' if log else ""))
    return (f'<svg class="loss" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">'
            f'{title}{axes}'
            f'<polyline points="{line(ty)}" fill="none" stroke="{color}" stroke-opacity="0.25" stroke-width="1"/>'
            f'<polyline points="{line(smooth)}" fill="none" stroke="{color}" stroke-width="2"/></svg>')


def _viewer(glb: Path) -> str:
    """Embedded GLB + viewer container (the script itself is inlined once at the end of the page)."""
    b64 = base64.b64encode(glb.read_bytes()).decode("ascii")
    return (f'<div class="viewer card" data-glb-source="glb-data" data-status="loading"><canvas></canvas>'
            f'<div class="hint">drag to orbit &middot; wheel to zoom &middot; double-click toggles auto-rotate '
            f'&middot; {html.escape(glb.name)} ({glb.stat().st_size / 1024:.0f} KiB)</div></div>'
            f'<script type="application/octet-stream" id="glb-data">{b64}</script>')


def _figure(path: Path, caption: str) -> str:
    """Image file -> <figure> with a data-URI <img> (or a note if missing)."""
    if not path.is_file():
        return f'<figure><p class="muted">missing: {html.escape(str(path))}</p></figure>'
    return (f'<figure><img src="{_data_uri(path)}" alt="{html.escape(caption)}">'
            f'<figcaption>{html.escape(caption)}</figcaption></figure>')


def write_report(run_dir: Path, title: str, summary: dict, losses: dict[str, list[float]], previews: list[Path],
                 turntable_gif: Path | None = None, glb: Path | None = None) -> Path:
    """Write run_dir/report.html: one self-contained page with no external references."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    has_glb = glb is not None and Path(glb).is_file()
    top = [_viewer(Path(glb)) if has_glb else "", f'<div class="card"><h2 style="margin-top:0">Metrics</h2>'
           f'{metrics_table(summary)}</div>']
    curves = "".join(loss_svg(k, list(v), PALETTE[i % len(PALETTE)]) for i, (k, v) in enumerate(losses.items()))
    media = [_figure(Path(p), Path(p).name) for p in previews]
    if turntable_gif is not None:
        media.insert(0, _figure(Path(turntable_gif), "turntable"))
    body = [f"<h1>{html.escape(title)}</h1>", f'<div class="top">{"".join(top)}</div>']
    if curves:
        body.append(f'<h2>Losses</h2><div class="curves card">{curves}</div>')
    if media:
        body.append(f'<h2>Previews</h2><div class="gallery">{"".join(media)}</div>')
    js = VIEWER_JS.read_text()
    assert "</script" not in js.lower(), "viewer.js must not contain a closing script tag"
    script = f"<script>\n{js}\n</script>" if has_glb else ""
    csp = "default-src 'none'; img-src data: blob:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n"
            f'<body><main>\n{chr(10).join(body)}\n</main>\n{script}\n</body></html>\n')
    out = run_dir / "report.html"
    out.write_text(page, encoding="utf-8")
    return out
