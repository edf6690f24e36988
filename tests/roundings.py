"""How many bfloat16 roundings a computation makes, and the relative error that many roundings give (bf16: 8
significand bits, unit roundoff u = 2^-8)."""
import math

import torch
from torch.utils._python_dispatch import TorchDispatchMode

BF16_U = 2.0 ** -8
_EXACT = {"view", "_unsafe_view", "reshape", "t", "transpose", "permute", "unsqueeze", "squeeze", "expand",
          "slice", "select", "split", "split_with_sizes", "chunk", "unbind", "clone", "cat", "stack", "detach",
          "alias", "upsample_nearest2d", "_to_copy", "copy_", "zeros_like", "empty_like", "new_empty", "as_strided"}


class CountRoundings(TorchDispatchMode):
    """Counts the ops that write a rounded bfloat16 result: every op with a bfloat16 output except data movement,
    and casts to bfloat16 from a wider type (casts between bfloat16 and wider types upward are exact)."""

    def __init__(self):
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        outs = out if isinstance(out, (tuple, list)) else (out,)
        if any(isinstance(o, torch.Tensor) and o.dtype == torch.bfloat16 for o in outs):
            name = func.__name__.split(".")[0]
            if name not in _EXACT:
                self.n += 1
            elif name in ("_to_copy", "copy_"):
                src = args[-1] if name == "copy_" else args[0]
                self.n += isinstance(src, torch.Tensor) and src.dtype != torch.bfloat16
        return out


def bf16_scale(n: int) -> float:
    """sqrt(n) * u: the relative error of n independent roundings of relative size <= u that add as a random walk
    (Higham & Mary 2019, probabilistic rounding error analysis; the worst case n * u exceeds 1 for a UNet)."""
    return math.sqrt(n) * BF16_U

