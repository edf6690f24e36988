"""Training-only code of the embedded models, used by scripts/train_*.py and tests/tools/; not in the wheel.

It may import the installed packages (dreamer, guidance, renderers); none of those imports it (tests/layering.py).
Scripts put the repository root on sys.path to import it (`python scripts/train_evaluator.py ...`).
"""
