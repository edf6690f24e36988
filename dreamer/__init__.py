"""dreamer: score distillation toolkit (text-to-3D and one/few-step generators) on a frozen diffusion teacher."""

__version__ = "0.1.0"
