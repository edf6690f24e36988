"""What a teacher can draw, when it says so: `teacher.json` may declare a vocabulary (the embedded shapes teacher
does: 6 shapes x 6 colours, prompts "a <colour> <shape>" with an optional ", <view> view"). A prompt is normalised
onto it (case, punctuation, article, plurals) or refused; teachers without a vocabulary take any prompt."""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from .errors import DreamerError
from .view_prompts import VIEW_SUFFIXES
from .world import teacher_meta

ARTICLES = ("a", "an", "the")
ALLOW_FLAG = "--allow-unknown-prompt"


class UnknownPrompt(DreamerError):
    """A prompt outside the teacher's declared vocabulary."""


@dataclass(frozen=True)
class Vocabulary:
    """Prompts of the form `template` over shapes x colours, optionally followed by ', <view>'."""

    shapes: tuple[str, ...]
    colours: tuple[str, ...]
    views: tuple[str, ...] = VIEW_SUFFIXES
    template: str = "a {colour} {shape}"

    @classmethod
    def from_dict(cls, d: dict) -> "Vocabulary":
        return cls(tuple(d["shapes"]), tuple(d["colours"]), tuple(d.get("views", VIEW_SUFFIXES)),
                   d.get("template", "a {colour} {shape}"))

    def prompts(self) -> list[str]:
        """Every prompt without a view suffix."""
        return [self.template.format(colour=c, shape=s) for s in self.shapes for c in self.colours]

    def _singular(self, word: str) -> str | None:
        """The shape a word names ('cubes' -> 'cube', 'tori' / 'toruses' -> 'torus'), or None."""
        for s in self.shapes:
            if word in (s, s + "s", s + "es") or (s.endswith("us") and word == s[:-2] + "i"):
                return s
        return None

    def normalise(self, prompt: str) -> str | None:
        """The canonical prompt ('A Red Cube!' / 'red cubes' -> 'a red cube'; 'a red cube, front view' keeps its
        view), or None when the prompt is not 'article? colour shape (, view)?'."""
        text = unicodedata.normalize("NFKC", prompt).lower()
        words = re.findall(r"[^\W_]+", text)                          # punctuation dropped, digits kept
        view = next((v for v in self.views if words[-len(v.split()):] == v.split()), None) if words else None
        if view:
            words = words[:-len(view.split())]
        if words and words[0] in ARTICLES:
            words = words[1:]
        if len(words) != 2 or words[0] not in self.colours:
            return None
        shape = self._singular(words[1])
        if shape is None:
            return None
        base = self.template.format(colour=words[0], shape=shape)
        return f"{base}, {view}" if view else base

    def describe(self) -> str:
        """One line: the template, shapes, colours and view suffixes."""
        example = self.template.format(colour="<colour>", shape="<shape>")
        return (f"'{example}' with shapes {', '.join(self.shapes)} and colours {', '.join(self.colours)}, "
                f"optionally followed by ', {self.views[0]}' ({', '.join(v.split()[0] for v in self.views)})")


def vocabulary_of(teacher_dir: str | Path | None) -> Vocabulary | None:
    """The vocabulary a local teacher folder declares in teacher.json; None (any prompt) for hub ids and folders
    without one."""
    vocab = teacher_meta(teacher_dir).get("vocabulary")
    return Vocabulary.from_dict(vocab) if vocab else None


def check_prompt_vocabulary(prompt: str, vocab: Vocabulary | None, teacher_name: str = "the teacher",
                            allow_unknown: bool = False) -> str:
    """The prompt to run: normalised onto `vocab`, unchanged when there is none or allow_unknown; else
    UnknownPrompt with one line listing what the teacher knows."""
    if vocab is None:
        return prompt
    canonical = vocab.normalise(prompt)
    if canonical is not None:
        return canonical
    if allow_unknown:
        return prompt
    raise UnknownPrompt(f"{teacher_name} does not know {prompt!r}: it knows {vocab.describe()}; "
                        f"run it anyway with {ALLOW_FLAG}")
