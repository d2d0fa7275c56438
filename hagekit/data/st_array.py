"""Legacy ST array geometry: which array a section was on, and its pitch in image pixels.

Two arrays exist. The 1k array (HER2ST, cSCC): 100 µm spots, 200 µm between neighbouring array
steps, every (x, y) position occupied. The 2k array (STUtility's mouse olfactory bulb): the
occupied positions form a checkerboard (x + y of one parity) with 100 µm per array step. The
array is told from the occupied positions, the pitch in pixels is fitted from the array
coordinates against the pixel centres, per axis; microns per pixel = µm per step / px per step.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

__all__ = ["StArray", "ST_1K", "ST_2K", "detect_st_array", "pitch_xy_px", "PITCH_TOLERANCE"]

#: x and y pitch may differ this much (relative) before a warning: a stretched or mis-scaled image.
PITCH_TOLERANCE = 0.05
#: Fewest occupied positions for the checkerboard to be told apart from a chance pattern.
_MIN_POSITIONS = 10

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StArray:
    """One ST array kind: its name and the distance of one array step (µm)."""

    name: str
    step_um: float

    @property
    def label(self) -> str:
        """What ``data list`` shows: ``ST 2k, 100 µm`` (µm per array step)."""
        return f"{self.name}, {self.step_um:g} µm"


ST_1K = StArray("ST 1k", 200.0)
ST_2K = StArray("ST 2k", 100.0)


def detect_st_array(array_xy: np.ndarray) -> StArray:
    """The 2k array when every occupied (x, y) has x + y of one parity (a checkerboard), else 1k."""
    xy = np.rint(np.asarray(array_xy, dtype=np.float64)).astype(np.int64)
    if len(xy) < _MIN_POSITIONS:
        return ST_1K
    parity = (xy[:, 0] + xy[:, 1]) % 2
    return ST_2K if (parity == parity[0]).all() else ST_1K


def pitch_xy_px(array_xy: np.ndarray, pixel_xy: np.ndarray) -> tuple[float, float]:
    """Pixels per array step along x and along y: slopes of least-squares fits pixel ~ array
    (NaN for an axis with a single array coordinate)."""
    out = []
    for k in range(2):
        a = np.asarray(array_xy[:, k], dtype=np.float64)
        out.append(abs(float(np.polyfit(a, pixel_xy[:, k], 1)[0])) if len(a) > 1 and np.ptp(a) > 0 else float("nan"))
    return out[0], out[1]
