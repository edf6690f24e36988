"""Where the application finds teachers: the embedded shapes teacher by default, else any diffusers folder / hub id.

Every way a teacher can be unusable (missing folder, truncated weights, hub id not cached while offline) becomes a
one-line TeacherError; `check_teacher_source` finds most of them without importing diffusers.
"""
from __future__ import annotations

import json
import re
import struct
from pathlib import Path

from .errors import TeacherError, one_line

ASSETS = Path(__file__).resolve().parent.parent / "assets"
DEFAULT_TEACHER = ASSETS / "shapes-teacher"
EMBEDDED_NAMES = (None, "", "embedded", "shapes")   # what a user may write for the embedded teacher (configs: None)
EMBEDDED = "embedded"                               # its name in reports (metrics.json, generator.json)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def is_embedded(ref: str | Path | None) -> bool:
    """`ref` names the embedded shapes teacher (one of EMBEDDED_NAMES)."""
    return isinstance(ref, (str, type(None))) and ref in EMBEDDED_NAMES


def teacher_ref(ref: str | Path | None) -> str | None:
    """A teacher reference as the configs keep it: None for the embedded teacher (whichever of EMBEDDED_NAMES the
    user wrote: a run folder's config.yaml from before said teacher: ""), else the folder / hub id as a string."""
    return None if is_embedded(ref) else str(ref)


def teacher_name(ref: str | Path | None) -> str:
    """A teacher reference for reports: "embedded" for the embedded teacher, else the folder / hub id."""
    return EMBEDDED if is_embedded(ref) else str(ref)


def is_hub_id(ref: str) -> bool:
    """'org/name' shaped (what the Hugging Face Hub accepts), and not a path-like string."""
    return bool(_HUB_ID.match(ref)) and ".." not in ref and not ref.endswith(".")


def check_safetensors(path: str | Path) -> None:
    """Header and size of a .safetensors file agree (catches truncation and garbage; names the file)."""
    path = Path(path)
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > size - 8:
                raise ValueError(f"header of {n} bytes in a {size}-byte file")
            header = json.loads(f.read(n))
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    except (struct.error, ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
        raise TeacherError(f"weights file {path} is corrupt ({one_line(e)})") from None
    if size != 8 + n + end:
        raise TeacherError(f"weights file {path} is truncated or corrupt: {size} bytes, the header needs "
                           f"{8 + n + end}; re-download or re-export it")


def check_weights_folder(folder: str | Path) -> None:
    """Every .safetensors file below `folder` is intact."""
    for f in sorted(Path(folder).rglob("*.safetensors")):
        check_safetensors(f)


def _hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def hub_snapshot(ref: str) -> Path | None:
    """The local snapshot folder of a cached hub id (looked up in the HF cache on disk, no network), or None."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(ref, "unet/config.json")
    return Path(found).parent.parent if isinstance(found, str) else None


def _cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def check_teacher_source(ref: str | Path | None) -> Path:
    """The local folder a teacher reference names (a hub id: its cached snapshot), after cheap checks.

    Nothing is downloaded at run time: a hub id missing from the local Hugging Face cache fails at once (no
    retries, no network), naming the cache and how to provide the weights (raises TeacherError).
    """
    if is_embedded(ref):
        if not (DEFAULT_TEACHER / "unet").is_dir():
            raise TeacherError(f"embedded teacher weights missing at {DEFAULT_TEACHER}; run scripts/train_teacher.py")
        return DEFAULT_TEACHER
    p = Path(ref).expanduser()
    if not p.exists():
        if not is_hub_id(str(ref)):
            raise TeacherError(f"teacher folder {ref} does not exist (give a diffusers folder or a hub id like "
                               f"org/name)")
        snap = hub_snapshot(str(ref))
        if snap is None:
            why = " and HF_HUB_OFFLINE=1" if _hub_offline() else ""
            raise TeacherError(f"teacher '{ref}' is not in the local Hugging Face cache{why} ({_cache_dir()}; "
                               f"dreamer does not download): fetch it once with `hf download {ref}` where there is "
                               f"network, or pass a local diffusers folder (--teacher PATH / teacher: PATH)")
        p = snap
    if not p.is_dir() or not (p / "unet").is_dir():
        raise TeacherError(f"teacher {ref} is not a diffusers pipeline folder (needs unet/ and scheduler/)")
    missing = [d for d in ("scheduler", "text_encoder", "tokenizer") if not (p / d).is_dir()]
    if missing and not (p / "teacher.json").is_file():
        raise TeacherError(f"teacher {ref} ({p}) lacks {', '.join(d + '/' for d in missing)}; a diffusers pipeline "
                           f"folder needs unet/, scheduler/, text_encoder/ and tokenizer/")
    check_weights_folder(p)
    return p


def teacher_folder(ref: str | Path | None) -> Path | None:
    """The local folder a teacher reference names, unchecked: the embedded teacher's for its names, an existing
    folder, a cached hub id's snapshot; else None."""
    if is_embedded(ref):
        return DEFAULT_TEACHER
    p = Path(ref).expanduser()
    if p.is_dir():
        return p
    return hub_snapshot(str(ref)) if is_hub_id(str(ref)) else None


def teacher_world(ref: str | Path | None):
    """The World (dreamer.common.world) of the teacher `ref` names, None when it has none."""
    from .world import world_of

    return world_of(teacher_folder(ref))


def load_teacher(path_or_id: str | Path | None = None, **options):
    """Load a DiffusersTeacher; None means the embedded shapes teacher shipped in the package. Its `vocabulary`
    (dreamer.common.vocabulary) is what teacher.json declares, None for any prompt."""
    src = check_teacher_source(path_or_id)
    from safetensors import SafetensorError

    from guidance import DiffusersTeacher, TeacherOptions

    from .progress import phase
    from .vocabulary import vocabulary_of

    try:
        with phase("loading teacher"):
            teacher = DiffusersTeacher.from_pretrained(src, TeacherOptions(**options))
    except (OSError, ValueError, KeyError, SafetensorError) as e:  # diffusers / hub / weights loading failures
        raise TeacherError(f"cannot load teacher {path_or_id or 'embedded'}: {one_line(e)}") from None
    teacher.vocabulary = vocabulary_of(src if isinstance(src, Path) else None)
    return teacher
