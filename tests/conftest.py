import sys
from pathlib import Path

import pytest
import torch

sys.path.append(str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root: tools/ (training-only, not installed)
torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory):
    """A tiny random SD pipeline saved to disk (epsilon prediction)."""
    from tiny_sd import build_tiny_sd

    folder = tmp_path_factory.mktemp("tiny_sd")
    build_tiny_sd(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_sdxl_dir(tmp_path_factory):
    """A tiny random SDXL-architecture pipeline saved to disk (two text encoders, text_time UNet)."""
    from tiny_sd import build_tiny_sdxl

    folder = tmp_path_factory.mktemp("tiny_sdxl")
    build_tiny_sdxl(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_sd21_dir(tmp_path_factory):
    """A tiny random SD-2.1-like pipeline: v-prediction, linear-projection transformers."""
    from tiny_sd import build_tiny_sd

    folder = tmp_path_factory.mktemp("tiny_sd21")
    build_tiny_sd(folder, prediction_type="v_prediction", linear_projection=True)
    return folder
