"""The layering of the README's Layout section holds: no import cycles, each package imports only what it may, and
training code never reaches the shapes world's evaluation modules; and the check catches a forbidden import."""
import shutil
from pathlib import Path

import pytest

from layering import PACKAGES, import_graph, violations

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def tree(tmp_path):
    """A copy of the project's packages (sources only) to break on purpose."""
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("assets", "__pycache__"))
    return tmp_path


def _append(path: Path, line: str) -> None:
    path.write_text(path.read_text() + "\n" + line + "\n")


def test_the_project_keeps_its_layering():
    assert violations(ROOT) == []


def test_the_graph_sees_every_kind_of_import():
    g = import_graph(ROOT)
    assert "guidance" in g["dreamer.text_to_3d.loop"]                                  # from guidance import ...
    assert "dreamer.common.checkpoints" in g["dreamer.text_to_3d.loop"]                 # from ..common.x import
    assert "dreamer.distill.generator" in g["dreamer.distill.trainers.toolkit"]          # from .. import generator
    assert "dreamer.shapes.evaluator" in g["dreamer.shapes.world_api"]                  # inside a function
    assert "dreamer.distill.trainers.score" in g["dreamer.distill.trainers"]            # from . import score


def test_a_training_module_reaching_the_evaluator_is_caught(tree):
    _append(tree / "dreamer/distill/trainers/kd.py", "    from ...shapes.evaluator import ShapesEvaluator  # noqa")
    found = violations(tree)
    assert any("training module dreamer.distill.trainers.kd reaches evaluation module dreamer.shapes.evaluator"
               in v for v in found), found


def test_an_application_importing_the_shapes_world_is_caught(tree):
    # text_to_3d and distill reach a world only through dreamer.common.world
    _append(tree / "dreamer/text_to_3d/outputs.py", "    from ..shapes.world import parse_prompt  # noqa")
    _append(tree / "dreamer/distill/captions.py", "import dreamer.shapes.render  # noqa")
    found = violations(tree)
    assert "dreamer.text_to_3d.outputs imports dreamer.shapes.world (forbidden for dreamer.text_to_3d)" in found
    assert "dreamer.distill.captions imports dreamer.shapes.render (forbidden for dreamer.distill)" in found


def test_training_reaching_evaluation_indirectly_is_caught(tree):
    # the 3D loop may import text_to_3d.export; export must then not pull in the metrics module
    _append(tree / "dreamer/text_to_3d/export.py", "from ..shapes import metrics  # noqa")
    found = violations(tree)
    assert any(v.startswith("training module dreamer.text_to_3d.loop reaches evaluation module "
                            "dreamer.shapes.metrics") for v in found), found


def test_a_lower_layer_importing_the_application_is_caught(tree):
    _append(tree / "guidance/losses.py", "import dreamer.common.errors  # noqa")
    _append(tree / "dreamer/common/config.py", "from ..distill import recipe  # noqa")
    found = violations(tree)
    assert "guidance.losses imports dreamer.common.errors (forbidden for guidance)" in found
    assert "dreamer.common.config imports dreamer.distill.recipe (forbidden for dreamer.common)" in found


def test_an_installed_package_importing_tools_is_caught(tree):
    # tools/ (training-only, not in the wheel) may import dreamer; dreamer, guidance, renderers must not import it
    assert "dreamer.shapes.world" in import_graph(tree)["tools.shapes_training.negatives"]
    assert not any(v.startswith("tools.") for v in violations(tree))
    _append(tree / "dreamer/shapes/evaluator.py", "    from tools.shapes_training.negatives import KINDS  # noqa")
    _append(tree / "renderers/mesh.py", "import tools  # noqa")
    found = violations(tree)
    assert "dreamer.shapes.evaluator imports tools.shapes_training.negatives (forbidden for dreamer)" in found
    assert "renderers.mesh imports tools (forbidden for renderers)" in found


def test_an_import_cycle_is_caught(tree):
    _append(tree / "dreamer/common/errors.py", "from .preflight import slug  # noqa")   # preflight imports errors
    found = violations(tree)
    assert any(v.startswith("import cycle:") and "dreamer.common.errors" in v and "dreamer.common.preflight" in v
               for v in found), found
