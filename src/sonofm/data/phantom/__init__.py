"""Seeded synthetic B-mode ultrasound phantoms: the built-in data for demos and tests.

:mod:`~sonofm.data.phantom.anatomy` draws a random subject (sector geometry, tissue layers, a lesion of one of
:data:`PHANTOM_CLASSES`, system settings) and moves it slightly between frames; :mod:`~sonofm.data.phantom.bmode`
simulates a convex-probe B-mode image of it and its mask (values index :data:`PHANTOM_MASK_CLASSES`);
:mod:`~sonofm.data.phantom.writer` writes the labelled data set that demos, tests and ``sonofm data phantom`` use.
"""

from sonofm.data.phantom.anatomy import (
    PHANTOM_CLASSES,
    FanGeometry,
    LayerBand,
    Lesion,
    PhantomSubject,
    draw_subject,
    perturb_subject,
)
from sonofm.data.phantom.bmode import MIN_SIZE, PHANTOM_MASK_CLASSES, render_phantom, render_subject, sector_mask
from sonofm.data.phantom.writer import MANIFEST_NAME, PHANTOM_VERSION, write_phantom_dataset

__all__ = [
    "MANIFEST_NAME",
    "MIN_SIZE",
    "PHANTOM_CLASSES",
    "PHANTOM_MASK_CLASSES",
    "PHANTOM_VERSION",
    "FanGeometry",
    "LayerBand",
    "Lesion",
    "PhantomSubject",
    "draw_subject",
    "perturb_subject",
    "render_phantom",
    "render_subject",
    "sector_mask",
    "write_phantom_dataset",
]
