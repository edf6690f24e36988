"""Video (mp4 + gif) and image-grid / PNG writers."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

MIN_VIDEO_SIZE = 256  # small frames are upscaled (nearest) to at least this on the long side


def _to_uint8_frames(frames) -> np.ndarray:
    """list/array of HxWx3 frames -> [T,H,W,3] uint8."""
    arr = np.stack([np.asarray(f) for f in frames]) if isinstance(frames, (list, tuple)) else np.asarray(frames)
    if arr.ndim != 4 or arr.shape[-1] not in (3, 4) or len(arr) == 0:
        raise ValueError(f"expected frames shaped [T,H,W,3], got {arr.shape}")
    if arr.dtype != np.uint8:
        arr = (np.clip(arr.astype(np.float32), 0, 1) * 255).round().astype(np.uint8)
    return arr[..., :3]


def _upscale_even(arr: np.ndarray, min_size: int = MIN_VIDEO_SIZE) -> np.ndarray:
    """Nearest-upscale [T,H,W,3] by an integer factor up to min_size, then edge-pad H,W to even."""
    k = max(1, math.ceil(min_size / max(arr.shape[1:3])))
    if k > 1:
        arr = arr.repeat(k, axis=1).repeat(k, axis=2)
    ph, pw = arr.shape[1] % 2, arr.shape[2] % 2
    if ph or pw:
        arr = np.pad(arr, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")
    return arr


def write_video(frames, path_mp4: str | Path | None, path_gif: str | Path | None = None, fps: int = 24,
                min_size: int = MIN_VIDEO_SIZE) -> tuple[Path | None, Path | None]:
    """Write frames (list of HxWx3 uint8 or [T,H,W,3]) to an H.264 mp4 and/or a looping gif."""
    import imageio.v2 as iio
    import imageio.v3 as iio3

    arr = _upscale_even(_to_uint8_frames(frames), min_size)  # [T,H',W',3]
    mp4 = Path(path_mp4) if path_mp4 else None
    gif = Path(path_gif) if path_gif else None
    if mp4 is not None:
        mp4.parent.mkdir(parents=True, exist_ok=True)
        writer = iio.get_writer(mp4, format="FFMPEG", mode="I", fps=fps, codec="libx264",
                                pixelformat="yuv420p", macro_block_size=1, quality=8)
        try:
            for frame in arr:
                writer.append_data(frame)
        finally:
            writer.close()
    if gif is not None:
        gif.parent.mkdir(parents=True, exist_ok=True)
        iio3.imwrite(gif, arr, extension=".gif", duration=1000.0 / fps, loop=0)
    return mp4, gif


def image_grid(images, nrow: int = 8, pad: int = 2, pad_value: float = 0.0) -> np.ndarray:
    """images [N,3,H,W] in [0,1] (tensor or array) -> HxWx3 uint8 grid with `nrow` images per row."""
    x = images.detach().float().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images, np.float32)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected images shaped [N,3,H,W], got {x.shape}")
    x = np.broadcast_to(x, (x.shape[0], 3, *x.shape[2:]))
    n, _, h, w = x.shape
    ncol = max(1, min(nrow, n))
    nrows = math.ceil(n / ncol)
    grid = np.full((nrows * (h + pad) + pad, ncol * (w + pad) + pad, 3), pad_value, np.float32)
    for i in range(n):
        r, c = divmod(i, ncol)
        y0, x0 = pad + r * (h + pad), pad + c * (w + pad)
        grid[y0:y0 + h, x0:x0 + w] = x[i].transpose(1, 2, 0)  # [H,W,3]
    return (np.clip(grid, 0, 1) * 255).round().astype(np.uint8)


def save_png(array: np.ndarray, path: str | Path) -> Path:
    """Save an HxWx3 (or HxW) uint8 array as PNG."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(array)).save(path)
    return path


def square_nrow(n: int) -> int:
    """Images per row of the most square grid of n images (16 -> 4, 10 -> 4, 1 -> 1)."""
    return max(1, math.ceil(math.sqrt(n)))


def with_caption(array: np.ndarray, text: str, min_width: int = 256, pad: int = 6) -> np.ndarray:
    """HxWx3 uint8 -> the image nearest-upscaled by a whole factor to >= min_width, under a white strip with `text`
    (PIL's default font; cut with '...' to fit)."""
    from PIL import Image, ImageDraw, ImageFont

    k = max(1, math.ceil(min_width / array.shape[1]))
    img = Image.fromarray(np.ascontiguousarray(array.repeat(k, 0).repeat(k, 1)))
    font = ImageFont.load_default()
    draw = ImageDraw.Draw(img)
    fit = text
    while fit and draw.textlength(fit, font=font) > img.width - 2 * pad:
        fit = fit[:-4] + "..." if len(fit) > 4 else ""
    top, _, _, bottom = draw.textbbox((0, 0), "Ag" + fit, font=font)
    strip = bottom - min(top, 0) + 2 * pad
    out = Image.new("RGB", (img.width, img.height + strip), (255, 255, 255))
    out.paste(img, (0, strip))
    ImageDraw.Draw(out).text((pad, pad - min(top, 0)), fit, fill=(0, 0, 0), font=font)
    return np.asarray(out)
