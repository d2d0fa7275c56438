"""Bags of feature vectors with planted positive instances, for the AB-MIL tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hagekit.io.h5 import write_features


def planted_bags(root: Path, n_bags: int = 32, dim: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
    """Bags of N(0, 1) tiles; positive bags hide 3 tiles shifted by +3 on 8 dims. Returns planted rows."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    planted: dict[str, np.ndarray] = {}
    rows = ["slide_id,label,case_id"]
    for i in range(n_bags):
        n = int(rng.integers(15, 30))
        x = rng.normal(size=(n, dim)).astype(np.float32)
        positive = i % 2 == 1
        if positive:
            k = rng.choice(n, size=3, replace=False)
            x[k, :8] += 3.0
            planted[f"bag{i:02d}"] = k
        coords = np.stack([np.arange(n) % 6 * 256, np.arange(n) // 6 * 256], axis=1)
        write_features(root / f"bag{i:02d}.h5", x, coords, attrs={"encoder": "planted", "patch_size_px": 256})
        rows.append(f"bag{i:02d},{'tumor' if positive else 'normal'},case{i // 2:02d}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return planted
