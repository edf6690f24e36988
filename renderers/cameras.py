"""Pinhole cameras on an orbit around the origin.

Conventions
-----------
* World: right-handed, **Y up**; the object is centred at the origin and fits roughly in
  [-0.5, 0.5]^3.
* Camera frame (OpenGL): +X right, +Y up, camera looks along **-Z**. ``c2w[:, :3, 0:3]`` are the
  right / up / back axes in world coordinates, ``c2w[:, :3, 3]`` is the camera centre.
  (gsplat / OpenCV frames are +X right, +Y down, +Z forward: ``w2c_cv = diag(1,-1,-1,1) @ inv(c2w)``,
  see :func:`opencv_viewmats`.)
* Pixels: row 0 is the top of the image; pixel ``(i, j)`` (column i, row j) covers
  ``[i, i+1] x [j, j+1]`` and its centre is at ``(i + 0.5, j + 0.5)``. Intrinsics ``fx, fy, cx, cy``
  are in pixels in the OpenCV sense (u = fx * x / z + cx with OpenCV camera coordinates).
* Orbit angles (degrees): position = distance * (cos(e) sin(a), sin(e), cos(e) cos(a)).
  azimuth 0 = front (+Z), 90 = right side (+X), +-180 = back; elevation 90 = overhead.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from . import rng

__all__ = [
    "Cameras", "look_at", "orbit_position", "orbit_cameras", "sample_orbit_cameras", "turntable_cameras",
    "camera_vector", "rays_from_cameras", "opencv_viewmats", "focal_from_fov",
]


@dataclass
class Cameras:
    """A batch of pinhole cameras sharing one image size."""

    c2w: torch.Tensor        # [B,4,4] camera-to-world (OpenGL camera frame)
    fx: torch.Tensor         # [B] pixels
    fy: torch.Tensor         # [B]
    cx: torch.Tensor         # [B]
    cy: torch.Tensor         # [B]
    width: int
    height: int
    elevation: torch.Tensor  # [B] degrees (kept for view-dependent prompts)
    azimuth: torch.Tensor    # [B] degrees
    distance: torch.Tensor   # [B] world units

    def __len__(self) -> int:
        return self.c2w.shape[0]

    @property
    def device(self) -> torch.device:
        return self.c2w.device

    def to(self, device=None, dtype=None) -> "Cameras":
        """Move/cast all tensors."""
        f = lambda t: t.to(device=device, dtype=dtype)  # noqa: E731
        return replace(self, c2w=f(self.c2w), fx=f(self.fx), fy=f(self.fy), cx=f(self.cx),
                       cy=f(self.cy), elevation=f(self.elevation), azimuth=f(self.azimuth),
                       distance=f(self.distance))

    def __getitem__(self, idx) -> "Cameras":
        if isinstance(idx, int):
            idx = slice(idx, idx + 1)
        return replace(self, c2w=self.c2w[idx], fx=self.fx[idx], fy=self.fy[idx], cx=self.cx[idx],
                       cy=self.cy[idx], elevation=self.elevation[idx], azimuth=self.azimuth[idx],
                       distance=self.distance[idx])

    @property
    def K(self) -> torch.Tensor:
        """Intrinsic matrices [B,3,3]."""
        B = len(self)
        K = torch.zeros(B, 3, 3, dtype=self.c2w.dtype, device=self.device)
        K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = self.fx, self.fy, self.cx, self.cy, 1
        return K


def focal_from_fov(fov_deg: torch.Tensor, size: int) -> torch.Tensor:
    """Focal length in pixels for a full field of view (degrees) across `size` pixels."""
    return 0.5 * size / torch.tan(torch.deg2rad(fov_deg) * 0.5)


def look_at(eye: torch.Tensor, target: torch.Tensor | None = None,
            up: torch.Tensor | None = None) -> torch.Tensor:
    """c2w [B,4,4] for cameras at eye [B,3] looking at target [B,3] (default origin), Y up."""
    B = eye.shape[0]
    target = torch.zeros_like(eye) if target is None else target.expand_as(eye)
    up = eye.new_tensor([0.0, 1.0, 0.0]).expand_as(eye) if up is None else up.expand_as(eye)
    back = torch.nn.functional.normalize(eye - target, dim=-1)              # +Z_cam
    right = torch.cross(up, back, dim=-1)
    # fall back to +Z as the reference "up" when looking straight up/down
    degenerate = right.norm(dim=-1, keepdim=True) < 1e-6
    alt = torch.cross(eye.new_tensor([0.0, 0.0, -1.0]).expand_as(eye), back, dim=-1)
    right = torch.nn.functional.normalize(torch.where(degenerate, alt, right), dim=-1)
    true_up = torch.cross(back, right, dim=-1)
    c2w = torch.zeros(B, 4, 4, dtype=eye.dtype, device=eye.device)
    c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2], c2w[:, :3, 3] = right, true_up, back, eye
    c2w[:, 3, 3] = 1.0
    return c2w


def orbit_position(elevation: torch.Tensor, azimuth: torch.Tensor, distance: torch.Tensor) -> torch.Tensor:
    """Camera centres [B,3] from orbit angles in degrees (see module docstring)."""
    e, a = torch.deg2rad(elevation), torch.deg2rad(azimuth)
    return torch.stack([torch.cos(e) * torch.sin(a), torch.sin(e), torch.cos(e) * torch.cos(a)], -1) * distance[:, None]


def orbit_cameras(elev, azim, dist, fov, width, height) -> Cameras:
    """Cameras at given orbit angles (degrees) [B], distances [B] and vertical fovs (degrees) [B]."""
    c2w = look_at(orbit_position(elev, azim, dist))
    f = focal_from_fov(fov, height)  # fov is vertical; square pixels
    return Cameras(c2w=c2w, fx=f.clone(), fy=f.clone(), cx=torch.full_like(f, width / 2),
                   cy=torch.full_like(f, height / 2), width=width, height=height,
                   elevation=elev, azimuth=azim, distance=dist)


def sample_orbit_cameras(batch: int, elev_range=(-10.0, 45.0), azim_range=(-180.0, 180.0),
                         dist_range=(2.0, 2.5), fov_range=(40.0, 50.0), width: int = 64,
                         height: int = 64, generator: torch.Generator | None = None,
                         stratified: bool = True, jitter: bool = True, device="cpu") -> Cameras:
    """Random orbit cameras looking at the origin; azimuths stratified into `batch` bins."""
    u = lambda: rng.rand(batch, generator=generator, device=device)  # noqa: E731
    lo, hi = azim_range
    if stratified:
        off = u() if jitter else torch.full((batch,), 0.5, device=device)
        azim = lo + (torch.arange(batch, device=device) + off) * (hi - lo) / batch
    else:
        azim = lo + u() * (hi - lo)
    elev = elev_range[0] + u() * (elev_range[1] - elev_range[0])
    dist = dist_range[0] + u() * (dist_range[1] - dist_range[0])
    fov = fov_range[0] + u() * (fov_range[1] - fov_range[0])
    return orbit_cameras(elev, azim, dist, fov, width, height)


def turntable_cameras(n: int, elevation: float = 15.0, distance: float = 2.2, fov: float = 45.0,
                      width: int = 64, height: int = 64, device="cpu") -> Cameras:
    """n cameras evenly spaced in azimuth (starting at the front) at fixed elevation."""
    azim = torch.arange(n, device=device, dtype=torch.float32) * (360.0 / n)
    azim = torch.where(azim > 180, azim - 360, azim)
    full = lambda v: torch.full((n,), float(v), device=device)  # noqa: E731
    return orbit_cameras(full(elevation), azim, full(distance), full(fov), width, height)


def camera_vector(cams: Cameras) -> torch.Tensor:
    """Flattened c2w [B,16] (camera condition for VSD)."""
    return cams.c2w.reshape(len(cams), 16)


def opencv_viewmats(cams: Cameras) -> torch.Tensor:
    """World-to-camera [B,4,4] in the OpenCV frame (+Z forward, +Y down) as gsplat expects."""
    flip = torch.diag(cams.c2w.new_tensor([1.0, -1.0, -1.0, 1.0]))
    return flip @ torch.linalg.inv(cams.c2w)


def rays_from_cameras(cams: Cameras) -> tuple[torch.Tensor, torch.Tensor]:
    """Ray origins [B,H,W,3] and unit directions [B,H,W,3] through pixel centres."""
    H, W = cams.height, cams.width
    dt, dev = cams.c2w.dtype, cams.device
    j, i = torch.meshgrid(torch.arange(H, dtype=dt, device=dev) + 0.5,
                          torch.arange(W, dtype=dt, device=dev) + 0.5, indexing="ij")  # [H,W]
    x = (i[None] - cams.cx[:, None, None]) / cams.fx[:, None, None]
    y = -(j[None] - cams.cy[:, None, None]) / cams.fy[:, None, None]
    d_cam = torch.stack([x, y, -torch.ones_like(x)], -1)                     # [B,H,W,3]
    dirs = torch.einsum("bij,bhwj->bhwi", cams.c2w[:, :3, :3], d_cam)
    dirs = torch.nn.functional.normalize(dirs, dim=-1)
    origins = cams.c2w[:, None, None, :3, 3].expand_as(dirs)
    return origins, dirs
