import sys
from pathlib import Path

import pytest
import torch

sys.path.append(str(Path(__file__).parent))
torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory):
    """A tiny random SD pipeline saved to disk (epsilon prediction)."""
    from tiny_sd import build_tiny_sd

    folder = tmp_path_factory.mktemp("tiny_sd")
    build_tiny_sd(folder)
    return folder
