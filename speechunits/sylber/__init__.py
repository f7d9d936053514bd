"""Sylber: syllabic speech units (greedy segmentation, bootstrap segmenter, training task, Segmenter API).

The encoder itself is general and lives in :mod:`speechunits.encoders`.

Exports are lazy so ``import speechunits.sylber.segment`` does not pull in torch.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "Segmenter": "speechunits.sylber.segmenter",
    "SegmentationResult": "speechunits.sylber.segmenter",
    "greedy_segment": "speechunits.sylber.segment",
    "greedy_segment_batch": "speechunits.sylber.segment",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'speechunits.sylber' has no attribute {name!r}")
