"""Renderers: cameras, 3D Gaussians, hash-grid NeRF (differentiable) and a triangle-mesh rasterizer. Knows nothing
of diffusion."""

from .cameras import (Cameras, camera_vector, focal_from_fov, look_at, opencv_viewmats, orbit_cameras, orbit_position,
                      rays_from_cameras, sample_orbit_cameras, turntable_cameras)
from .gaussians import (GaussianParams, activate, gaussians_color, gaussians_density, gaussians_density_grid,
                        init_gaussians_ball,
                        init_gaussians_from_points, load_3dgs_ply, make_optimizer, project_colors_, rgb_to_sh0,
                        save_3dgs_ply,
                        sh0_to_rgb)
from .gaussians_densify import (DensifyConfig, DensifyState, densify_and_prune, edit_gaussians, reset_opacity,
                                update_densify_state)
from .sh import eval_sh
from .gaussians_raster import (median_depth, project_gaussians, quat_to_rotmat, rasterize,
                               rasterize_dense_reference, rasterize_tiles)
from .hashgrid import HashGrid, HashGridConfig, make_hashgrid
from .mesh import rasterize_mesh, render_trimesh, sample_texture
from .metrics import psnr
from .nerf import (BackgroundMLP, NeRFConfig, NeRFField, NeRFRenderConfig, nerf_color, nerf_density_grid,
                   random_light_dirs, render_nerf, render_rays)
from .regularizers import gaussian_scale_reg, opacity_entropy, opacity_l1, orientation_loss
from .shading import depth_normals, relight, shade
from .volume import OccupancyGrid, composite, composite_nerfacc, ray_aabb, stratified_samples

__all__ = [
    "Cameras", "camera_vector", "focal_from_fov", "look_at", "opencv_viewmats", "orbit_cameras", "orbit_position",
    "rays_from_cameras", "sample_orbit_cameras", "turntable_cameras",
    "GaussianParams", "activate", "gaussians_color", "gaussians_density", "gaussians_density_grid", "init_gaussians_ball",
    "init_gaussians_from_points", "load_3dgs_ply", "make_optimizer", "project_colors_", "rgb_to_sh0", "save_3dgs_ply", "sh0_to_rgb",
    "DensifyConfig", "DensifyState", "densify_and_prune", "edit_gaussians", "reset_opacity",
    "update_densify_state",
    "eval_sh", "median_depth", "project_gaussians", "quat_to_rotmat", "rasterize", "rasterize_dense_reference", "rasterize_tiles",
    "HashGrid", "HashGridConfig", "make_hashgrid",
    "rasterize_mesh", "render_trimesh", "sample_texture",
    "psnr",
    "BackgroundMLP", "NeRFConfig", "NeRFField", "NeRFRenderConfig", "nerf_color", "nerf_density_grid",
    "random_light_dirs", "render_nerf", "render_rays",
    "gaussian_scale_reg", "opacity_entropy", "opacity_l1", "orientation_loss",
    "depth_normals", "relight", "shade",
    "OccupancyGrid", "composite", "composite_nerfacc", "ray_aabb", "stratified_samples",
]
