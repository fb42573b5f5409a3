"""Synthetic tasks whose ground truth is known, so interpretability methods can be checked against it.

``toykit.tasks.tinylang``: TinyLang, a small English-like language mixing sentence families
(indirect object identification, number agreement, entity tracking, cyclic successors,
repeated spans and factual recall), each example carrying its latent labels.

``toykit.tasks.shapes``: 32 x 32 greyscale images of lines, curves, circles, squares and
triangles, each with its class, object mask, stroke orientation and curvature.
"""
