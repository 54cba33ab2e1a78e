"""Inference: bundles, chunked overlap-add separation, separating files and evaluating a split.

It sits below `sepjax.train` (training exports and validates through it) and imports nothing from it.
"""
