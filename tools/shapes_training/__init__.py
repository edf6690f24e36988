"""What trains the shapes world's embedded models, besides the world itself (dreamer.shapes.world / .render):

- ``teacher_spec``     the teacher's architecture and training recipe (scripts/train_teacher.py)
- ``negatives``        the evaluator's reject-head negatives (``negative_shapes``: shapes outside the catalogue)
- ``evaluator_data``   the evaluator's training and held-out image sets (scripts/train_evaluator.py)
- ``sdf_render``       the sphere tracer behind the negatives and the relit catalogue renders
"""
