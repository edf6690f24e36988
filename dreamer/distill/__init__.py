"""The distillation application: a one/few-step generator trained from the teacher (loop.distill), its recipe,
the generator format and sampler, and the trainers (trainers.TRAINERS)."""
