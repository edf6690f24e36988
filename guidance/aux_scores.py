"""Auxiliary score models trained on the particles: VSD's camera-conditioned LoRA and DMD's full fake score."""
from __future__ import annotations

import copy
import itertools
from pathlib import Path

import torch
import torch.nn.functional as F

from .fsdp import shard_unet
from .lora import add_lora, lora_state_dict
from .losses import cfg_combine
from .noise_schedule import add_noise, eps_from_output, native_weight
from .optim import guarded_step, master_weights
from .shard import randint_rows, randn_rows
from .teachers import unet_eps
from .unet_split import Encoded, decode, encode, supports_split

LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
# full-match regex: the attention projections of the decoder half (the up blocks) only
LORA_ALL_TARGETS = r".*\.(" + "|".join(t.replace(".", r"\.") for t in LORA_TARGETS) + ")"
LORA_DECODER_TARGETS = r"up_blocks\..*\.(" + "|".join(t.replace(".", r"\.") for t in LORA_TARGETS) + ")"


def optimise(loss: torch.Tensor, params, opt: torch.optim.Optimizer, max_norm: float = 1.0) -> float:
    """guarded_step with the auxiliary's clip; the loss, or NaN when the update was skipped (e.g. a NaN render)."""
    return float("nan") if guarded_step(loss, opt, max_norm, params=params) is None else loss.item()


def denoise_loss(eps_pred: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor,
                 prediction_type: str = "epsilon", space: str = "eps") -> torch.Tensor:
    """Denoising loss mean_B w_b mean_CHW (eps_hat - eps)^2 (Ho et al. 2020, eq. 14); space "eps": w = 1, "native":
    w = native_weight (v-prediction 1 / abar, i.e. exactly the v-space MSE threestudio's VSD LoRA trains on)."""
    if space == "eps":
        return (eps_pred - noise).pow(2).mean()
    per = (eps_pred - noise).pow(2).flatten(1).mean(1)                                  # [B]
    if space != "native":  # pragma: no cover - GuidanceConfig / recipes check the name first
        raise ValueError(f"denoising loss space must be eps or native, got {space!r}")
    abar = alphas_cumprod.to(per.device, torch.float64)[t]
    return (native_weight(prediction_type, abar).to(per) * per).mean()


def denoise_train_step(eps_fn, params, opt: torch.optim.Optimizer, x0: torch.Tensor, cond: torch.Tensor,
                       alphas_cumprod: torch.Tensor, generator: torch.Generator | None = None, loss_fn=None,
                       max_norm: float = 1.0, **kw) -> float:
    """One step of the denoising loss (default ||eps_fn(x_t, t, cond) - eps||^2), t ~ U{0, ..., T-1} (Ho et al. 2020,
    eq. 14); loss_fn(eps_hat, eps, t) replaces the plain eps-space MSE; max_norm clips the gradient norm."""
    x0 = x0.detach()
    t = randint_rows(len(alphas_cumprod), x0.shape[0], generator).to(x0.device)    # data parallel: own rows
    noise = randn_rows(x0.shape, generator).to(x0)
    eps = eps_fn(add_noise(x0, noise, t, alphas_cumprod), t, cond, **kw)
    loss = F.mse_loss(eps, noise) if loss_fn is None else loss_fn(eps, noise, t)
    return optimise(loss, params, opt, max_norm)


class CameraEmbedding(torch.nn.Module):
    """Flattened 4x4 camera-to-world [B,16] -> time-embedding offset [B,D]; zero-initialised output layer."""

    def __init__(self, dim: int, hidden: int = 64):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(16, hidden), torch.nn.SiLU(), torch.nn.Linear(hidden, dim))
        torch.nn.init.zeros_(self.net[-1].weight)
        torch.nn.init.zeros_(self.net[-1].bias)

    def forward(self, camera: torch.Tensor) -> torch.Tensor:
        return self.net(camera)


class LoraScore:
    """VSD's eps_lora(x_t, t, y, c) = Dec_lora(Enc_teacher(x_t, t, y), emb(t) + cam(c), y) (Wang et al. 2023, sec. 4).

    A LoRA (guidance.lora; peft's layout) adapts the attention projections of the UNet's decoder half (its up
    blocks) on a shallow copy of the teacher UNet whose frozen weights are the teacher's own tensors (no extra
    memory; teacher passes never run adapter code). The camera MLP's offset enters the decoder's time embedding.
    As the encoder half is the teacher's, the guidance pass hands its conditional encoder output over
    (`teacher_cfg`, then `eps(..., encoded=)`) and a LoRA pass, forward and backward, runs the decoder alone.
    """

    def __init__(self, teacher, rank: int = 4, lr: float = 1e-4, camera_dropout: float = 0.1,
                 loss_space: str = "eps", max_grad_norm: float = 1.0):
        why = supports_split(teacher.unet)
        if why is not None:
            raise ValueError(f"VSD's LoRA score needs an SD-family UNet split into encoder / decoder; {why} is "
                             f"not supported")
        self.teacher = teacher
        shared = {id(v): v for v in itertools.chain(teacher.unet.parameters(), teacher.unet.buffers())}
        self.unet = copy.deepcopy(teacher.unet, memo=shared)  # new modules, same weight tensors
        self.layers = add_lora(self.unet, LORA_DECODER_TARGETS, rank)                 # float32 A, B
        dim = self.unet.time_embedding.linear_2.out_features
        self.camera = CameraEmbedding(dim).to(self.unet.device, torch.float32)
        self.params = [p for m in self.layers.values() for p in (m.lora_A.weight, m.lora_B.weight)]
        self.params += list(self.camera.parameters())
        self.opt = torch.optim.AdamW(self.params, lr=lr, foreach=True)
        self.camera_dropout = camera_dropout
        self.alphas_cumprod = teacher.alphas_cumprod
        self.loss_space, self.max_grad_norm = loss_space, max_grad_norm

    def denoise_loss(self, eps: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """guidance.aux_scores.denoise_loss in this score's loss space (eps, or the teacher's native output)."""
        return denoise_loss(eps, noise, t, self.alphas_cumprod, self.teacher.prediction_type, self.loss_space)

    def _out_to_eps(self, out: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return eps_from_output(out, x_t.to(out.dtype), t, self.alphas_cumprod, self.teacher.prediction_type)

    def teacher_cfg(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor,
                    scale: float) -> tuple[torch.Tensor, Encoded]:
        """The teacher's batched CFG pass (as guidance.teacher_cfg; same numbers) -> eps_cfg [B,...] and the
        encoder output of its conditional half, for `eps(..., encoded=)`."""
        unet, B = self.teacher.unet, x_t.shape[0]
        dt = unet.dtype
        x2 = x_t.repeat(2, *[1] * (x_t.dim() - 1)).to(dt)
        enc = encode(unet, x2, t.repeat(2), torch.cat([cond, uncond]).to(dt))
        eps_c, eps_u = self._out_to_eps(decode(unet, enc), x2, t.repeat(2)).to(x_t.dtype).chunk(2)
        return cfg_combine(eps_u, eps_c, scale), enc.take(slice(0, B))

    def eps(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, camera: torch.Tensor | None = None,
            encoded: Encoded | None = None) -> torch.Tensor:
        """eps with the LoRA decoder; camera [B,16] or None (dropped); `encoded`: Enc_teacher(x_t, t, cond) if
        already computed (the guidance pass's conditional half)."""
        dt = self.unet.dtype
        if encoded is None:
            with torch.no_grad():
                encoded = encode(self.teacher.unet, x_t.to(dt), t, cond.to(dt))
        emb = encoded.emb
        if camera is not None:
            emb = emb + self.camera(camera.to(emb.device, torch.float32)).to(emb.dtype)
        return self._out_to_eps(decode(self.unet, encoded, emb), x_t, t).to(x_t.dtype)

    def drops_camera(self, generator: torch.Generator | None = None) -> bool:
        """Draw whether this update drops the camera condition (whole batch, p = camera_dropout)."""
        return torch.rand((), generator=generator).item() < self.camera_dropout

    def apply_loss(self, loss: torch.Tensor) -> float:
        """One optimizer step on a denoising loss computed elsewhere (the guidance pass, `aux_fit`)."""
        return optimise(loss, self.params, self.opt, self.max_grad_norm)

    def train_step(self, x0: torch.Tensor, cond: torch.Tensor, camera: torch.Tensor | None = None,
                   generator: torch.Generator | None = None) -> float:
        """One LoRA step on detached renders; the camera is dropped for the whole batch with p = camera_dropout."""
        if camera is not None and self.drops_camera(generator):
            camera = None
        return denoise_train_step(self.eps, self.params, self.opt, x0, cond, self.alphas_cumprod, generator,
                                  self.denoise_loss, self.max_grad_norm, camera=camera)

    def save(self, out_dir: str | Path) -> None:
        """LoRA in the diffusers format (loadable by `pipe.load_lora_weights`) + camera MLP as safetensors."""
        from diffusers import StableDiffusionPipeline
        from diffusers.utils import convert_state_dict_to_diffusers
        from safetensors.torch import save_file

        state = convert_state_dict_to_diffusers(lora_state_dict(self.layers))
        StableDiffusionPipeline.save_lora_weights(str(out_dir), unet_lora_layers=state, safe_serialization=True)
        save_file({k: v.contiguous() for k, v in self.camera.state_dict().items()},
                  str(Path(out_dir) / "camera_embedding.safetensors"))


class FakeScore:
    """DMD / Diff-Instruct fake score: a full trainable copy of the teacher UNet (initialised from it), or with
    lora_rank > 0 a LoRA on every attention projection of a shallow copy (the teacher's own frozen tensors).

    max_grad_norm clips its updates (DMD2: 10; 1.0 was this class's fixed value before it became a setting);
    gradient_checkpointing recomputes the UNet's blocks in the backward pass (diffusers), trading time for memory;
    fsdp shards the full copy's weights, gradients and Adam moments over the ranks (guidance.fsdp).
    """

    def __init__(self, teacher, lr: float = 1e-4, betas=(0.0, 0.999), max_grad_norm: float = 1.0,
                 loss_space: str = "eps", lora_rank: int = 0, gradient_checkpointing: bool = False,
                 fsdp: bool = False):
        self.teacher = teacher
        if lora_rank > 0:
            shared = {id(v): v for v in itertools.chain(teacher.unet.parameters(), teacher.unet.buffers())}
            self.unet = copy.deepcopy(teacher.unet, memo=shared).train()   # new modules, same frozen tensors
            self.layers = add_lora(self.unet, LORA_ALL_TARGETS, lora_rank)
            self.params = [p for m in self.layers.values() for p in (m.lora_A.weight, m.lora_B.weight)]
        else:
            self.unet = master_weights(copy.deepcopy(teacher.unet), teacher.unet.dtype).requires_grad_(True).train()
            if fsdp:
                shard_unet(self.unet)        # before the optimizer: the parameters become DTensors
            self.params = list(self.unet.parameters())
        if gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()
        self.alphas_cumprod = teacher.alphas_cumprod
        self.opt = torch.optim.AdamW(self.params, lr=lr, betas=betas, weight_decay=0.0)
        self.max_grad_norm, self.loss_space = max_grad_norm, loss_space

    def eps(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, **kw) -> torch.Tensor:
        return unet_eps(self.unet, self.teacher.prediction_type, self.alphas_cumprod, x_t, t, cond, **kw)

    def denoise_loss(self, eps: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return denoise_loss(eps, noise, t, self.alphas_cumprod, self.teacher.prediction_type, self.loss_space)

    def apply_loss(self, loss: torch.Tensor) -> float:
        return optimise(loss, self.params, self.opt, self.max_grad_norm)

    def train_step(self, x0: torch.Tensor, cond: torch.Tensor, camera=None,
                   generator: torch.Generator | None = None) -> float:
        return denoise_train_step(self.eps, self.params, self.opt, x0, cond, self.alphas_cumprod, generator,
                                  self.denoise_loss, self.max_grad_norm)
