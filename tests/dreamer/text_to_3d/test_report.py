"""Tests for the self-contained HTML report (plus an opt-in headless-chromium render check)."""
import base64
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from dreamer.text_to_3d.export import extract_mesh, save_mesh
from dreamer.text_to_3d.report import loss_svg, write_report
from dreamer.common.media import image_grid, save_png, write_video

torch.set_num_threads(1)
CHROMIUM = Path("/usr/bin/chromium")


def two_tone(p):  # [P,3] -> [P,3]: red upper half, blue lower half
    up = (p[:, 1:2] > 0).float()
    return up * torch.tensor([0.9, 0.15, 0.15]) + (1 - up) * torch.tensor([0.15, 0.25, 0.9])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    mesh = extract_mesh(lambda p: torch.sigmoid((0.6 - p.norm(dim=-1)) * 30), two_tone, res=32, threshold=0.5)
    glb = save_mesh(mesh, d)["glb"]
    prev = save_png(image_grid(torch.rand(4, 3, 8, 8), nrow=2), d / "preview.png")
    _, gif = write_video([np.full((16, 16, 3), 40 * i, np.uint8) for i in range(4)], None, d / "turntable.gif")
    losses = {"sds": [float(np.exp(-i / 50)) for i in range(300)], "reg": [0.5, float("nan"), 0.4, 0.3]}
    summary = {"steps": 300, "final_loss": 0.012345, "guidance": {"cfg_scale": 7.5}, "prompt": "a <red> ball"}
    html = write_report(d, "Test & run", summary, losses, [prev], gif, glb)
    return d, html, glb, prev, gif


def test_report_is_self_contained(run):
    d, html_path, glb, prev, gif = run
    assert html_path == d / "report.html"
    html = html_path.read_text()
    assert "http://" not in html and "https://" not in html and "//" + "cdn" not in html
    assert base64.b64encode(glb.read_bytes()).decode() in html
    assert base64.b64encode(prev.read_bytes()).decode() in html
    assert "data:image/gif;base64," + base64.b64encode(gif.read_bytes()).decode() in html
    assert all(src.startswith("data:") for src in re.findall(r'src="([^"]*)"', html))
    assert html.count("<svg") == 2 and html.count("<polyline") == 4
    assert "guidance.cfg_scale" in html and "0.01235" in html and "a &lt;red&gt; ball" in html
    assert "<title>Test &amp; run</title>" in html
    assert html.count("</script>") == 2  # GLB data block + viewer; the viewer source must not close early


def test_report_without_glb(tmp_path):
    html = write_report(tmp_path, "empty", {}, {}, [], None, None).read_text()
    assert "data-glb-source" not in html and "<script" not in html and "no metrics" in html


def test_loss_svg_handles_short_and_nonfinite():
    assert "not enough finite values" in loss_svg("x", [float("nan"), 1.0])
    svg = loss_svg("y", [1.0, float("inf"), 2.0, 3.0])
    pts = re.findall(r'<polyline points="([^"]*)"', svg)[0].split()
    assert len(pts) == 3  # the inf is dropped
    assert "log scale" in loss_svg("z", [1000.0, 1.0, 0.1]) and "log scale" not in svg


def _chromium(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--use-gl=angle", "--use-angle=swiftshader",
             "--enable-unsafe-swiftshader", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--no-first-run", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
             "--window-size=1000,900", "--virtual-time-budget=3000"]
    return subprocess.run([str(CHROMIUM), *flags, *extra, url], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(os.environ.get("DREAMER_BROWSER_TEST") != "1" or not CHROMIUM.exists(),
                    reason="opt-in: set DREAMER_BROWSER_TEST=1 and install /usr/bin/chromium to render the report")
def test_report_renders_in_headless_chromium(run, tmp_path):
    from PIL import Image

    _, html_path, *_ = run
    shot = tmp_path / "shot.png"
    proc = _chromium(html_path.as_uri(), tmp_path / "profile1", f"--screenshot={shot}")
    console = [ln for ln in proc.stderr.splitlines()  # page console output, minus SwiftShader perf notes
               if ("CONSOLE" in ln or "Uncaught" in ln) and "GL Driver Message" not in ln]
    assert not console, "page console output:\n" + "\n".join(console)
    assert shot.is_file(), proc.stderr[-2000:]
    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)  # [900,1000,3]
    assert img.std() > 10  # not blank
    viewer = img[60:580, 20:660]  # the viewer card (top-left of the page)
    r, g, b = viewer[..., 0], viewer[..., 1], viewer[..., 2]
    assert ((r > 120) & (r > g + 60) & (r > b + 60)).sum() > 5000  # red upper half of the sphere drawn
    assert ((b > 90) & (b > r + 40) & (b > g + 30)).sum() > 5000  # blue lower half drawn

    dom = _chromium(html_path.as_uri(), tmp_path / "profile2", "--dump-dom").stdout
    assert re.search(r'data-glb-source="glb-data"[^>]*data-status="ok"', dom), "viewer did not report status=ok"


def _hand_glb(path: Path) -> Path:
    """Minimal GLB: a cube with uint16 indices, float VEC3 COLOR_0, no NORMAL, under a translated node."""
    import json
    import struct

    import trimesh

    box = trimesh.creation.box()
    pos = box.vertices.astype(np.float32)  # [8,3]
    col = (pos > 0).astype(np.float32)  # [8,3] float colours
    idx = box.faces.astype(np.uint16).ravel()  # [36]
    idx_bytes = idx.tobytes() + b"\0" * (-idx.nbytes % 4)
    bin_ = idx_bytes + pos.tobytes() + col.tobytes()
    views = [(0, idx.nbytes), (len(idx_bytes), pos.nbytes), (len(idx_bytes) + pos.nbytes, col.nbytes)]
    gltf = {"asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0]}],
            "nodes": [{"children": [1], "rotation": [0, 0.3826834, 0, 0.9238795]}, {"mesh": 0, "translation": [0.5, 0, 0]}],
            "meshes": [{"primitives": [{"attributes": {"POSITION": 1, "COLOR_0": 2}, "indices": 0}]}],
            "buffers": [{"byteLength": len(bin_)}],
            "bufferViews": [{"buffer": 0, "byteOffset": o, "byteLength": n} for o, n in views],
            "accessors": [{"bufferView": 0, "componentType": 5123, "count": 36, "type": "SCALAR"},
                          {"bufferView": 1, "componentType": 5126, "count": 8, "type": "VEC3",
                           "min": pos.min(0).tolist(), "max": pos.max(0).tolist()},
                          {"bufferView": 2, "componentType": 5126, "count": 8, "type": "VEC3"}]}
    js = json.dumps(gltf).encode()
    js += b" " * (-len(js) % 4)
    body = struct.pack("<II", len(js), 0x4E4F534A) + js + struct.pack("<II", len(bin_), 0x004E4942) + bin_
    path.write_bytes(struct.pack("<III", 0x46546C67, 2, 12 + len(body)) + body)
    loaded = trimesh.load(path, force="mesh", process=False)  # sanity: a valid GLB for trimesh too
    assert len(loaded.faces) == 12
    return path


@pytest.mark.skipif(os.environ.get("DREAMER_BROWSER_TEST") != "1" or not CHROMIUM.exists(),
                    reason="opt-in: set DREAMER_BROWSER_TEST=1 and install /usr/bin/chromium to render the report")
def test_viewer_handles_uint16_float_colors_no_normals(tmp_path):
    glb = _hand_glb(tmp_path / "cube.glb")
    html = write_report(tmp_path, "cube", {}, {}, [], None, glb)
    proc = _chromium(html.as_uri(), tmp_path / "profile", "--dump-dom")
    assert "dreamer viewer" not in proc.stderr and "Uncaught" not in proc.stderr
    assert re.search(r'data-status="ok" data-triangles="12"', proc.stdout), proc.stdout[-500:]


def _textured_sphere_glb(path: Path) -> Path:
    """A sphere whose only colour is its baseColorTexture: red where y > 0, blue below (no vertex colours)."""
    import io

    from PIL import Image

    from dreamer.text_to_3d.gltf import write_textured_glb
    from dreamer.text_to_3d.texture import dilate, rasterize_uv, unwrap

    mesh = extract_mesh(lambda p: torch.sigmoid((0.6 - p.norm(dim=-1)) * 30), None, res=32, threshold=0.5)
    tm = unwrap(mesh, 128)
    fid, bary = rasterize_uv(tm.face_uvs, 128)
    pts = (bary[fid >= 0][:, :, None] * tm.vertices[tm.faces[fid[fid >= 0]]]).sum(1)     # [T,3] texel points
    tex = np.zeros((128, 128, 3))
    tex[fid >= 0] = np.where(pts[:, 1:2] > 0, [0.9, 0.15, 0.15], [0.15, 0.25, 0.9])
    png = io.BytesIO()
    Image.fromarray((dilate(tex, fid >= 0) * 255).astype(np.uint8)).save(png, format="PNG")
    return write_textured_glb(path, tm.vertices[tm.vmap], tm.normals[tm.vmap], tm.uv, tm.uv_faces, png.getvalue())


@pytest.mark.skipif(os.environ.get("DREAMER_BROWSER_TEST") != "1" or not CHROMIUM.exists(),
                    reason="opt-in: set DREAMER_BROWSER_TEST=1 and install /usr/bin/chromium to render the report")
def test_viewer_draws_the_glb_texture(tmp_path):
    from PIL import Image

    glb = _textured_sphere_glb(tmp_path / "mesh.glb")
    html = write_report(tmp_path, "textured", {}, {}, [], None, glb)
    shot = tmp_path / "shot.png"
    proc = _chromium(html.as_uri(), tmp_path / "profile1", f"--screenshot={shot}")
    assert "dreamer viewer" not in proc.stderr and "Uncaught" not in proc.stderr, proc.stderr[-2000:]
    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)[60:580, 20:660]        # the viewer card
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    assert ((r > 120) & (r > g + 60) & (r > b + 60)).sum() > 5000  # red upper half: from the texture only
    assert ((b > 90) & (b > r + 40) & (b > g + 30)).sum() > 5000   # blue lower half
    dom = _chromium(html.as_uri(), tmp_path / "profile2", "--dump-dom").stdout
    assert re.search(r'data-status="ok"', dom) and re.search(r'data-texture="loaded"', dom), dom[-800:]
