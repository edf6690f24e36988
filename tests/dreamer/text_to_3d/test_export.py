"""Tests for mesh extraction/export and video/image writing."""
import numpy as np
import pytest
import torch
import trimesh

from dreamer.text_to_3d.export import ExportError, extract_mesh, save_mesh
from dreamer.common.media import image_grid, save_png, write_video

torch.set_num_threads(1)
RES, BOUND, RADIUS = 48, 1.0, 0.5


def sphere_density(p):  # [P,3] -> [P]; ~1 inside radius 0.5, ~0 outside, exactly 0.5 on the sphere
    return torch.sigmoid((RADIUS - p.norm(dim=-1)) * 40.0)


def xyz_color(p):  # [P,3] -> [P,3] in [0,1]
    return p * 0.5 + 0.5


def offset_sphere(center, r):
    return lambda p: torch.sigmoid((r - (p - torch.tensor(center)).norm(dim=-1)) * 40.0)


@pytest.fixture(scope="module")
def sphere():
    return extract_mesh(sphere_density, xyz_color, bound=BOUND, res=RES, threshold=0.5)


def test_sphere_geometry(sphere):
    cell = 2 * BOUND / (RES - 1)
    r = np.linalg.norm(sphere.vertices, axis=1)
    assert np.abs(r - RADIUS).max() < cell / 2
    assert sphere.is_watertight
    assert sphere.volume == pytest.approx(4 / 3 * np.pi * RADIUS ** 3, rel=0.03)  # positive: outward normals


def test_vertex_colors_from_color_fn(sphere):
    vc = sphere.visual.vertex_colors  # [V,4] uint8
    expect = np.round((sphere.vertices * 0.5 + 0.5) * 255).astype(np.int64)
    assert vc.dtype == np.uint8 and vc.shape == (len(sphere.vertices), 4)
    assert np.abs(vc[:, :3].astype(np.int64) - expect).max() <= 1  # float32 eval vs float64 reference
    assert (vc[:, 3] == 255).all()


@pytest.mark.parametrize("ext", ["glb", "obj", "ply"])
def test_save_round_trip(sphere, tmp_path, ext):
    path = save_mesh(sphere, tmp_path)[ext]
    assert path == tmp_path / f"mesh.{ext}" and path.stat().st_size > 0
    loaded = trimesh.load(path, process=False, force="mesh")
    assert loaded.vertices.shape == sphere.vertices.shape and loaded.faces.shape == sphere.faces.shape
    np.testing.assert_array_equal(loaded.faces, sphere.faces)
    np.testing.assert_allclose(loaded.vertices, sphere.vertices, atol=1e-6)
    np.testing.assert_array_equal(loaded.visual.vertex_colors, sphere.visual.vertex_colors)


def test_obj_has_vertex_color_columns(sphere, tmp_path):
    lines = [ln for ln in save_mesh(sphere, tmp_path, stem="s")["obj"].read_text().splitlines() if ln.startswith("v ")]
    assert len(lines) == len(sphere.vertices) and all(len(ln.split()) == 7 for ln in lines)


def test_keep_largest_component():
    two = lambda p: torch.maximum(offset_sphere([0.45, 0.0, 0.0], 0.4)(p), offset_sphere([-0.6, 0.0, 0.0], 0.2)(p))
    both = extract_mesh(two, None, res=40, threshold=0.5, keep_largest=False)
    big = extract_mesh(two, None, res=40, threshold=0.5)
    assert len(both.split(only_watertight=False)) == 2 and len(big.split(only_watertight=False)) == 1
    assert big.vertices[:, 0].min() > 0.0  # the small sphere at x=-0.6 was dropped


@pytest.mark.parametrize("fn", [lambda p: torch.zeros(len(p)), lambda p: torch.full((len(p),), 50.0)])
def test_empty_field_raises(fn):
    with pytest.raises(ExportError, match="no surface at threshold 10"):
        extract_mesh(fn, None, res=8, threshold=10.0)


def test_video_mp4_and_gif(tmp_path):
    import imageio.v2 as iio
    frames = [np.full((32, 32, 3), i * 20, np.uint8) for i in range(6)]
    mp4, gif = write_video(frames, tmp_path / "t.mp4", tmp_path / "t.gif", fps=12)
    reader = iio.get_reader(mp4)
    got = [f for f in reader]
    reader.close()
    assert len(got) == 6 and got[0].shape == (256, 256, 3)
    assert abs(int(got[3].mean()) - 60) <= 3
    g = iio.mimread(gif)
    assert len(g) == 6 and g[0].shape[:2] == (256, 256)


def test_image_grid_and_png(tmp_path):
    imgs = torch.zeros(5, 3, 4, 6)
    imgs[1, 0] = 1.0  # second image pure red
    grid = image_grid(imgs, nrow=3, pad=1)
    assert grid.dtype == np.uint8 and grid.shape == (2 * 4 + 3, 3 * 6 + 4, 3)
    assert tuple(grid[1, 8]) == (255, 0, 0) and tuple(grid[0, 0]) == (0, 0, 0)
    from PIL import Image
    p = save_png(grid, tmp_path / "g.png")
    assert np.array_equal(np.asarray(Image.open(p)), grid)


def test_fill_enclosed_makes_a_shell_solid_and_keeps_open_holes():
    from dreamer.text_to_3d.export import density_grid, fill_enclosed

    shell = lambda p: torch.exp(-((p.norm(dim=-1) - 0.5) / 0.05) ** 2)  # [P] peak 1 on the r=0.5 sphere
    grid = density_grid(shell, BOUND, RES)
    filled = fill_enclosed(grid, 0.5)
    c = RES // 2
    assert grid[c, c, c] < 1e-6 and filled[c, c, c] == pytest.approx(1.0)  # interior raised to 2 * level
    axis = np.linspace(-BOUND, BOUND, RES)
    r = np.sqrt(sum(a ** 2 for a in np.meshgrid(axis, axis, axis, indexing="ij")))  # [R,R,R]
    assert (filled >= grid).all() and np.array_equal(filled[r > 0.6], grid[r > 0.6])  # outside untouched
    solid = extract_mesh(shell, None, bound=BOUND, res=RES, threshold=0.5, grid=filled)
    hollow = extract_mesh(shell, None, bound=BOUND, res=RES, threshold=0.5, keep_largest=False, grid=grid)
    assert solid.is_watertight and solid.volume == pytest.approx(4 / 3 * np.pi * 0.55 ** 3, rel=0.08)
    assert hollow.volume < 0.6 * solid.volume  # the shell alone: outer minus inner sphere

    # a torus of density: its hole is open to the outside, so nothing is filled there
    def torus(p):
        q = torch.stack([p[:, :2].norm(dim=-1) - 0.5, p[:, 2]], -1)
        return torch.sigmoid((0.15 - q.norm(dim=-1)) * 40.0)

    g = density_grid(torus, BOUND, RES)
    changed = fill_enclosed(g, 0.5) != g
    assert (g[changed] > 0.5).all()  # only the torus's own solid is raised; its hole and the outside are not


def test_export_renders_each_bake_view_once_and_writes_what_the_unshared_pipeline_writes(tmp_path):
    """outputs.export_meshes (SharedRenders): every camera the export looks from is rendered once, and the meshes
    and texture are bit-identical to those of the same steps each rendering for itself (a deterministic scene)."""
    from collections import Counter

    from dreamer.text_to_3d.outputs import export_mesh, export_meshes
    from dreamer.text_to_3d.recipe import load_generate_config
    from dreamer.text_to_3d.scenes import SCENES
    from dreamer.text_to_3d.texture import export_textured

    torch.set_num_threads(1)
    config = load_generate_config("gaussians-sds", "a red cube", None, ["export.mesh_resolution=32",
                                                                        "export.texture_size=64", "export.faces=1500"])
    scene = SCENES["gaussians"](config.gaussians, torch.Generator().manual_seed(0))  # the initial splat cloud
    calls, render = Counter(), scene.render

    def counted(cams, step, generator=None):
        calls[(cams.width, cams.c2w.numpy().tobytes())] += 1
        return render(cams, step, generator)

    scene.render = counted
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    mesh, level, files, m = export_meshes(config, scene, tmp_path / "a")
    shared_calls, calls = calls, Counter()
    assert "mesh_error" not in files and "texture_error" not in files and m["export_seconds"] > 0
    assert max(shared_calls.values()) == 1                                 # bake views 24 at 48 and 96 px,
    assert Counter(w for w, _ in shared_calls) == {48: 24, 96: 24, 64: 8}  # the export-gap views 8 at 64 px
    mesh_b, level_b, grid_b = export_mesh(config, scene)                   # the steps rendering for themselves
    export_textured(scene, mesh_b, tmp_path / "b", config.export, level_b, grid=grid_b)
    assert max(calls.values()) == 2 and set(calls) >= set(shared_calls)   # each view twice without sharing
    assert level == level_b and np.array_equal(mesh.vertices, mesh_b.vertices)
    assert np.array_equal(mesh.visual.vertex_colors, mesh_b.visual.vertex_colors)
    for name in ("mesh_texture.png", "mesh.obj"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
