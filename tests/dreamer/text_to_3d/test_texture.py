"""Textured export: UV atlas without overlaps, a baked GT-textured cube re-rendered, GLB / OBJ files readable by
trimesh and pygltflib, decimation within a Chamfer bound, topology kept (torus genus 1) or repaired (thin tunnel)."""
import numpy as np
import pytest
import torch
import trimesh

import renderers as R
from dreamer.text_to_3d.export import extract_mesh, fill_enclosed
from dreamer.text_to_3d.mesh_clean import (boundary_loops, clean_mesh, close_tunnels, decimate, fill_small_holes,
                                           topology)
from dreamer.text_to_3d.recipe import ExportConfig
from dreamer.text_to_3d.texture import (bake_texture, export_textured, gap_cameras, rasterize_uv, render_textured,
                                        unwrap)
from renderers.metrics import psnr

torch.set_num_threads(1)
FACE_COLOURS = np.array([[0.9, 0.1, 0.1], [0.1, 0.8, 0.2], [0.1, 0.2, 0.9], [0.95, 0.85, 0.1], [0.7, 0.2, 0.8],
                         [0.1, 0.8, 0.8]])


class CubeScene:
    """Ground truth: a cube whose six sides have known colours, rendered unlit by the exact mesh rasterizer."""

    depth_kind = "ray"  # renderers.mesh depth is the distance along the ray

    def __init__(self, half=0.4):
        box = trimesh.creation.box(extents=[2 * half] * 3)
        side = np.argmax(np.abs(box.face_normals), 1) * 2 + (box.face_normals.max(1) > 0.5)   # [12] in 0..5
        self.v = torch.as_tensor(box.vertices[box.faces].reshape(-1, 3))                      # unwelded [36,3]
        self.f = torch.arange(36).reshape(12, 3)
        self.c = torch.as_tensor(np.repeat(FACE_COLOURS[side], 3, 0))                         # [36,3]
        self.mesh = trimesh.remesh.subdivide_to_size(box.vertices, box.faces, 0.1)
        self.mesh = trimesh.Trimesh(*self.mesh)

    def render(self, cams, step=0):
        out = R.rasterize_mesh(self.v, self.f, self.c, cams, shading="none")
        return {k: out[k] for k in ("rgb", "alpha", "depth")}

    def color_fn(self, pts):
        return torch.full((len(pts), 3), 0.5)


def torus_field(p, R_=0.34, r=0.15):
    q = torch.stack([p[:, [0, 2]].norm(dim=-1) - R_, p[:, 1]], -1)
    return torch.sigmoid((r - q.norm(dim=-1)) * 40.0)


@pytest.fixture(scope="module")
def torus():
    return extract_mesh(torus_field, None, res=48, threshold=0.5)


def _strict_cover_counts(face_uvs, size):
    """How many UV triangles strictly contain each texel centre [S,S] (edges excluded)."""
    tri = torch.as_tensor(face_uvs) * size - 0.5
    lo, hi = torch.ceil(tri.amin(1)).clamp_min(0).long(), torch.floor(tri.amax(1)).clamp_max(size - 1).long()
    span = (hi - lo + 1).clamp_min(0)
    cnt = span[:, 0] * span[:, 1]
    k = torch.repeat_interleave(torch.arange(len(tri)), cnt)
    off = torch.arange(len(k)) - torch.repeat_interleave(torch.cumsum(cnt, 0) - cnt, cnt)
    p = torch.stack([lo[k, 0] + off % span[k, 0], lo[k, 1] + off // span[k, 0]], -1).double()
    a, b, c = tri[k, 0], tri[k, 1], tri[k, 2]
    x = lambda u, v: u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0]  # noqa: E731
    s = torch.sign(x(b - a, c - a))[:, None]
    w = torch.stack([x(c - b, p - b), x(a - c, p - c), x(b - a, p - a)], -1) * s
    inside = (w > 1e-9).all(-1)
    pix = (p[inside, 1] * size + p[inside, 0]).long()
    return torch.bincount(pix, minlength=size * size).reshape(size, size)


def test_xatlas_uvs_cover_the_mesh_without_overlap(torus):
    tm = unwrap(torus, 512)
    assert tm.faces.shape == torus.faces.shape and (tm.face_uvs >= 0).all() and (tm.face_uvs <= 1).all()
    np.testing.assert_allclose(tm.vertices[tm.vmap][tm.uv_faces], tm.vertices[tm.faces])  # same triangles
    e1, e2 = tm.face_uvs[:, 1] - tm.face_uvs[:, 0], tm.face_uvs[:, 2] - tm.face_uvs[:, 0]
    area = 0.5 * (e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])
    assert (np.abs(area) > 0).all()                              # every face has its own piece of the atlas
    counts = _strict_cover_counts(tm.face_uvs, 1024)
    assert counts.max() == 1                                     # no texel centre inside two UV triangles
    assert abs(counts.sum() / 1024 ** 2 - np.abs(area).sum()) < 0.01  # covered fraction = total UV area
    fid, bary = rasterize_uv(tm.face_uvs, 256)
    assert len(np.unique(fid[fid >= 0])) > 0.3 * len(tm.faces) and np.allclose(bary[fid >= 0].sum(-1), 1)


def test_baked_gt_cube_rerenders_within_psnr():
    scene = CubeScene()
    tm = unwrap(scene.mesh, 256)
    tm.texture, seen = bake_texture(scene, tm, 256)
    assert seen > 0.99
    cams = gap_cameras(64)
    ours, gt = render_textured(tm, cams)["rgb"], scene.render(cams)["rgb"]
    assert psnr(ours, gt) > 28.0          # measured 30.8 dB; the misses sit on the cube's coloured edges (<1 % of pixels)
    assert psnr(ours.flip(0), gt) < 20.0  # and the metric can fail (views swapped)


def test_sample_texture_is_bilinear_clamp_to_edge():
    tex = torch.tensor([[[0.0, 1.0], [0.5, 0.25]]])[[0, 0, 0]]                                # [3,2,2]
    uv = torch.tensor([[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.5, 0.5], [0.0, 0.0], [1.0, 0.25]])
    got = R.sample_texture(tex, uv)[:, 0]
    np.testing.assert_allclose(got.numpy(), [0.0, 1.0, 0.5, 0.4375, 0.0, 1.0], atol=1e-12)


def test_constant_texture_renders_like_vertex_colours(torus):
    tm = unwrap(torus, 64)
    tm.texture = np.full((64, 64, 3), 0.3)
    cams = gap_cameras(32)
    a = render_textured(tm, cams, shading="flat")["rgb"]
    b = R.rasterize_mesh(torch.as_tensor(torus.vertices), torch.as_tensor(torus.faces), torch.full((3,), 0.3),
                         cams, shading="flat")["rgb"]
    assert (a - b).abs().max() < 1e-6


def test_glb_and_obj_open_with_texture_and_material(tmp_path):
    pygltflib = pytest.importorskip("pygltflib")
    from PIL import Image

    scene = CubeScene()
    ex = ExportConfig(faces=2000, texture_size=256, close_radius=0, vertex_color_glb=True)  # 1920 faces, kept
    files, metrics = export_textured(scene, scene.mesh, tmp_path, ex, level=None, truth=None)   # no ground truth
    assert set(files) == {"glb", "obj", "mtl", "texture", "vertex_color_glb"}
    assert metrics["textured_faces"] == len(scene.mesh.faces) and metrics["watertight"] and metrics["genus"] == 0
    assert metrics["export_gap_psnr"] > 25 and "textured_psnr_vs_gt" not in metrics
    g = pygltflib.GLTF2().load(str(tmp_path / "mesh.glb"))
    pbr = g.materials[0].pbrMetallicRoughness
    assert pbr.baseColorTexture.index == 0 and pbr.metallicFactor == 0 and pbr.roughnessFactor == 1
    assert g.images[0].mimeType == "image/png" and g.meshes[0].primitives[0].attributes.TEXCOORD_0 is not None
    view = g.bufferViews[g.images[0].bufferView]
    blob = g.binary_blob()[view.byteOffset:view.byteOffset + view.byteLength]
    png = tmp_path / "from_glb.png"
    png.write_bytes(blob)
    assert np.array_equal(np.asarray(Image.open(png)), np.asarray(Image.open(tmp_path / "mesh_texture.png")))
    glb = trimesh.load(tmp_path / "mesh.glb", force="mesh")
    assert glb.visual.kind == "texture" and glb.visual.material.baseColorTexture.size == (256, 256)
    obj = trimesh.load(tmp_path / "mesh.obj", force="mesh")
    assert obj.visual.kind == "texture" and obj.visual.material.image.size == (256, 256)
    side = lambda n: np.argmax(np.abs(n), 1) * 2 + (n.max(1) > 0.5)  # noqa: E731  (as CubeScene)
    for m, image in ((glb, glb.visual.material.baseColorTexture), (obj, obj.visual.material.image)):
        uv = m.visual.uv[m.faces].mean(1)                        # face centroids in trimesh's (OBJ, v up) UVs
        got = trimesh.visual.color.uv_to_color(uv, image)[:, :3] / 255.0
        err = np.abs(got - FACE_COLOURS[side(m.face_normals)]).max(1)    # glTF v down, OBJ v up: both right
        assert np.quantile(err, 0.9) < 0.02 and err.mean() < 0.02     # (edge faces: the bake views' blur)
    assert abs(glb.area - scene.mesh.area) < 1e-4 and abs(obj.volume - 0.8 ** 3) < 1e-4


def _point_to_mesh(points, mesh, chunk=64):
    """Exact distance [P] from points [P,3] to the nearest triangle of a mesh (plane inside, else nearest edge)."""
    tri = torch.tensor(np.array(mesh.triangles))                                    # [F,3,3]
    a, b, c = tri[None].unbind(2)                                              # [1,F,3] each
    n = torch.nn.functional.normalize(torch.linalg.cross(b - a, c - a, dim=-1), dim=-1)
    out = []
    for p in torch.as_tensor(points).split(chunk):
        p = p[:, None]                                                          # [p,1,3]
        h = ((p - a) * n).sum(-1)                                               # [p,F] signed plane distance
        q = p - h[..., None] * n
        side = [(torch.linalg.cross(v - u, q - u, dim=-1) * n).sum(-1) >= 0 for u, v in ((a, b), (b, c), (c, a))]
        inside = side[0] & side[1] & side[2]
        seg = []
        for u, v in ((a, b), (b, c), (c, a)):
            t = (((p - u) * (v - u)).sum(-1) / ((v - u) ** 2).sum(-1)).clamp(0, 1)
            seg.append((p - (u + t[..., None] * (v - u))).norm(dim=-1))
        d = torch.where(inside, h.abs(), torch.stack(seg).amin(0))
        out.append(d.amin(1))
    return torch.cat(out).numpy()


def test_decimation_keeps_chamfer_small():

    sphere = extract_mesh(lambda p: torch.sigmoid((0.5 - p.norm(dim=-1)) * 40), None, res=48, threshold=0.5)
    small = decimate(sphere, 500)
    assert len(small.faces) <= 500 < len(sphere.faces) // 8
    a, b = trimesh.sample.sample_surface(sphere, 400, seed=0)[0], trimesh.sample.sample_surface(small, 400, seed=1)[0]
    chamfer = 0.5 * (_point_to_mesh(a, small).mean() + _point_to_mesh(b, sphere).mean()) / np.linalg.norm(sphere.extents)
    assert chamfer < 2e-3  # fraction of the bbox diagonal; measured 1.04e-3 (5,180 -> 500 faces)
    assert topology(small)["genus"] == 0 and small.is_watertight


def test_torus_keeps_genus_one_through_cleanup(torus):
    assert topology(torus)["genus"] == 1
    axis = torch.linspace(-1, 1, 48)
    dens = torus_field(torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3))
    g = close_tunnels(dens.reshape(48, 48, 48).numpy(), 0.5, 2)
    cleaned = clean_mesh(extract_mesh(None, None, res=48, threshold=0.5, grid=fill_enclosed(g, 0.5)), 1500)
    topo = topology(cleaned)
    assert topo == {"watertight": True, "components": 1, "boundary_loops": 0, "genus": 1}


def test_thin_tunnel_is_sealed_but_not_without_closing():
    def drilled(p):  # ball of radius 0.5 with a drill hole of radius 0.03 along x
        tube = torch.sigmoid((p[:, 1:].norm(dim=-1) - 0.03) * 200.0)
        return torch.sigmoid((0.5 - p.norm(dim=-1)) * 40.0) * tube
    axis = torch.linspace(-1, 1, 64)
    g = drilled(torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)).reshape(64, 64, 64)
    g = g.numpy()
    raw = extract_mesh(None, None, res=64, threshold=0.5, grid=fill_enclosed(g, 0.5))
    sealed = extract_mesh(None, None, res=64, threshold=0.5, grid=fill_enclosed(close_tunnels(g, 0.5, 2), 0.5))
    assert topology(raw)["genus"] == 1 and topology(sealed)["genus"] == 0


def test_small_holes_filled_large_kept():
    sphere = trimesh.creation.icosphere(3)
    cut = sphere.copy()
    cut.update_faces(~(cut.faces == 0).any(1))                              # a small hole: vertex 0's fan
    assert len(boundary_loops(cut.faces)) == 1 and not cut.is_watertight
    assert fill_small_holes(cut, 32).is_watertight
    half = sphere.copy()
    half.update_faces(sphere.triangles_center[:, 1] > 0)                    # a hemisphere: one big rim
    assert len(boundary_loops(fill_small_holes(half, 32).faces)) == 1


class MeshScene:
    """A scene that renders a mesh exactly (alpha 0 / 1), for the silhouette veto of tunnel closing."""

    depth_kind = "ray"

    def __init__(self, mesh):
        self.v, self.f = torch.as_tensor(mesh.vertices), torch.as_tensor(mesh.faces)

    def render(self, cams, step=0):
        return R.rasterize_mesh(self.v, self.f, None, cams, shading="none")


def test_tunnel_closing_keeps_an_opening_the_renders_show():
    from dreamer.text_to_3d.texture import in_silhouettes

    narrow = lambda p: torus_field(p, R_=0.22, r=0.15)  # noqa: E731  hole radius 0.07: ~4 voxels across
    axis = torch.linspace(-1, 1, 64)
    g = narrow(torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)).reshape(64, 64, 64)
    g = g.numpy()
    scene_mesh = extract_mesh(None, None, res=64, threshold=0.5, grid=g)
    scene = MeshScene(scene_mesh)
    assert topology(scene_mesh)["genus"] == 1
    blind = extract_mesh(None, None, res=64, threshold=0.5, grid=close_tunnels(g, 0.5, 3))
    seen = extract_mesh(None, None, res=64, threshold=0.5, grid=close_tunnels(g, 0.5, 3, in_silhouettes(scene, 64)))
    assert topology(blind)["genus"] == 0 and topology(seen)["genus"] == 1
    assert abs(seen.volume - scene_mesh.volume) < 0.02 * scene_mesh.volume
