"""Training captions of a distillation run: a recipe list or a caption file, read by line offsets (streamed), and
encoded once (up to `prompt_cache` prompts) or per batch, so a large caption set never sits on the device."""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

from ..common.errors import DreamerError

JSON_KEYS = ("caption", "text", "prompt")


class CaptionFile(Sequence):
    """Captions of a text file (one a line) or a JSONL file (one {"caption" | "text" | "prompt": ...} a line);
    blank lines are skipped. Only byte offsets are kept in memory; a caption is read when indexed."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise DreamerError(f"caption file {self.path} does not exist")
        self.offsets: list[int] = []
        self.jsonl = self.path.suffix.lower() in (".jsonl", ".json")
        with open(self.path, "rb") as f:
            pos, n = 0, 0
            for raw in f:
                n += 1
                if b"\0" in raw:
                    raise DreamerError(f"caption file {self.path} is binary (NUL byte on line {n}), not text")
                try:
                    line = raw.decode("utf-8").strip()
                except UnicodeDecodeError:
                    raise DreamerError(f"caption file {self.path} is not UTF-8 text (line {n})") from None
                if line:
                    if self.jsonl or (n == 1 and line.startswith("{")):
                        self.jsonl = True
                        _caption(line, self.path, n)       # checked once here, parsed again when read
                    self.offsets.append(pos)
                pos += len(raw)
        if not self.offsets:
            raise DreamerError(f"caption file {self.path} holds no captions")

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        with open(self.path, "rb") as f:
            f.seek(self.offsets[i])
            line = f.readline().decode("utf-8").strip()
        return _caption(line, self.path, None) if self.jsonl else line


def _caption(line: str, path: Path, n: int | None) -> str:
    where = f" line {n}" if n else ""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError:
        raise DreamerError(f"caption file {path}{where} is not JSON (JSONL needs one object a line)") from None
    text = next((obj[k] for k in JSON_KEYS if isinstance(obj, dict) and isinstance(obj.get(k), str)), None)
    if text is None or not text.strip():
        raise DreamerError(f"caption file {path}{where} has no non-empty {' / '.join(JSON_KEYS)} string")
    return text.strip()


_SCANNED: dict[tuple, CaptionFile] = {}


def run_captions(config) -> Sequence[str] | None:
    """The recipe's captions: prompts_file (CaptionFile; a file is scanned once while unchanged), prompts (list) or
    None (neither given)."""
    if config.prompts_file:
        path = Path(config.prompts_file).expanduser()
        st = path.stat() if path.is_file() else None
        key = (str(path.resolve()), st.st_mtime_ns, st.st_size) if st else None
        if key not in _SCANNED:
            found = CaptionFile(path)
            _SCANNED.clear()
            _SCANNED[key] = found
        return _SCANNED[key]
    return list(config.prompts) or None


def encode_texts(teacher, texts, chunk: int = 256) -> torch.Tensor:
    """teacher.encode_prompt over texts (any sequence, e.g. a CaptionFile slice) in chunks -> cond [N,L,D]."""
    return torch.cat([teacher.encode_prompt(list(texts[i:i + chunk])) for i in range(0, len(texts), chunk)])


class PromptBank:
    """Prompt embeddings indexed like a tensor, bank[idx] -> cond [B,L,D]: all encoded once when there are at most
    `cache` prompts (chunks of 256), else encoded per batch from the texts (nothing kept)."""

    def __init__(self, teacher, texts: Sequence[str], cache: int = 4096):
        self.teacher, self.texts = teacher, texts
        self.cached = None
        if len(texts) <= cache:
            self.cached = encode_texts(teacher, texts)
        probe = self.cached[:1] if self.cached is not None else teacher.encode_prompt([texts[0]])
        self.device, self.shape_tail = probe.device, tuple(probe.shape[1:])

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.shape_tail)

    def __getitem__(self, idx: torch.Tensor) -> torch.Tensor:
        if self.cached is not None:
            return self.cached[idx]
        return self.teacher.encode_prompt([self.texts[int(i)] for i in idx.reshape(-1).tolist()])
