"""A lean LoRA for VSD's auxiliary score: y = W x + b + (alpha / r) B A x (Hu et al. 2021, eq. 3).

peft's LoRA layers carry per-call bookkeeping (adapter loops, dtype casts, dropout and scaling lookups) that costs
as much as the low-rank product itself on a small CPU UNet; VSD runs a LoRA forward + backward every step, so it
uses this one-adapter layer. Parameter names follow peft's (`base_layer`, `lora_A.weight`, `lora_B.weight`), and
`lora_state_dict` is what peft's `get_peft_model_state_dict` returns, so diffusers' `save_lora_weights` /
`load_lora_weights` read and write it unchanged.
"""
from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F


class LoraLinear(torch.nn.Module):
    """A frozen nn.Linear (its own tensors, not copied) plus a trainable rank-r update; B = 0 at start."""

    def __init__(self, base_layer: torch.nn.Linear, rank: int, alpha: float | None = None):
        super().__init__()
        self.base_layer = base_layer
        self.lora_A = torch.nn.Linear(base_layer.in_features, rank, bias=False)
        self.lora_B = torch.nn.Linear(rank, base_layer.out_features, bias=False)
        torch.nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))  # peft's default init
        torch.nn.init.zeros_(self.lora_B.weight)
        self.lora_A.to(base_layer.weight.device)
        self.lora_B.to(base_layer.weight.device)
        self.scale = (alpha if alpha is not None else rank) / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x [..., in] -> [..., out]
        w = self.lora_A.weight
        delta = F.linear(F.linear(x.to(w.dtype), w), self.lora_B.weight)
        if self.scale != 1.0:
            delta = delta * self.scale
        return self.base_layer(x) + delta.to(x.dtype)


def add_lora(model: torch.nn.Module, target: str, rank: int) -> dict[str, LoraLinear]:
    """Wrap every nn.Linear of `model` whose qualified name fully matches the regex `target`, in place."""
    layers = {}
    for name, module in list(model.named_modules()):
        if isinstance(module, torch.nn.Linear) and re.fullmatch(target, name):
            parent, _, leaf = name.rpartition(".")
            layers[name] = LoraLinear(module, rank)
            setattr(model.get_submodule(parent), leaf, layers[name])
    if not layers:
        raise ValueError(f"no nn.Linear matches the LoRA target {target!r}")
    return layers


def lora_state_dict(layers: dict[str, LoraLinear]) -> dict[str, torch.Tensor]:
    """{'<name>.lora_A.weight', '<name>.lora_B.weight'} (peft's adapter state-dict layout)."""
    return {f"{name}.{part}.weight": getattr(layer, part).weight.detach()
            for name, layer in layers.items() for part in ("lora_A", "lora_B")}
