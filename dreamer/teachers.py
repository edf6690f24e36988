"""Where the application finds teachers: the embedded shapes teacher by default, else any diffusers folder / hub id."""
from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"
DEFAULT_TEACHER = ASSETS / "shapes-teacher"


def load_teacher(path_or_id: str | Path | None = None, **options):
    """Load a DiffusersTeacher; None means the embedded shapes teacher shipped in the package."""
    from guidance import DiffusersTeacher, TeacherOptions

    src = DEFAULT_TEACHER if path_or_id in (None, "", "embedded", "shapes") else path_or_id
    if isinstance(src, Path) and not (src / "unet").is_dir():
        raise FileNotFoundError(f"embedded teacher weights missing at {src}; run scripts/train_teacher.py")
    return DiffusersTeacher.from_pretrained(src, TeacherOptions(**options))
