"""HEST-Benchmark's published per-task Pearson r (not recomputed here), for ``--show-published``.

Source: mahmoodlab/HEST README.md, section "HEST-Benchmark results (08.30.24)", as of commit
afd42c3143092c51e6bcc0f1df65bbf58a467e5e (README last changed 2025-05-01). Mean Pearson r over
the 50 genes, averaged over each task's patient folds; ridge on PCA-256 (HEST's fixed alpha).
That README table has no UNI2-h or H-optimus-1 row (averages 0.414 / 0.423 are quoted
elsewhere, unverified here); only rows of the table are shipped.
"""

from __future__ import annotations

__all__ = ["PUBLISHED", "PUBLISHED_SOURCE", "PUBLISHED_DATE", "PUBLISHED_TASKS", "published_rows"]

PUBLISHED_SOURCE = "github.com/mahmoodlab/HEST README.md @ afd42c3 ('HEST-Benchmark results (08.30.24)')"
PUBLISHED_DATE = "2024-08-30"
#: Task columns as the README names them; the task folders are IDC, PRAD, PAAD, SKCM, COAD,
#: READ, CCRCC, LUNG (LUAD) and LYMPH_IDC.
PUBLISHED_TASKS = ("IDC", "PRAD", "PAAD", "SKCM", "COAD", "READ", "CCRCC", "LUNG", "LYMPH_IDC")

_ROWS = {
    "resnet50": (0.4741, 0.3075, 0.3889, 0.4822, 0.2528, 0.0812, 0.2231, 0.4917, 0.2322, 0.326),
    "ctranspath": (0.511, 0.3427, 0.4378, 0.5106, 0.2285, 0.11, 0.2279, 0.4985, 0.2353, 0.3447),
    "phikon": (0.5327, 0.342, 0.4432, 0.5355, 0.2585, 0.1517, 0.2423, 0.5468, 0.2373, 0.3656),
    "conch": (0.5363, 0.3548, 0.4475, 0.5791, 0.2533, 0.1674, 0.2179, 0.5312, 0.2507, 0.3709),
    "remedis": (0.529, 0.3471, 0.4644, 0.5818, 0.2856, 0.1145, 0.2647, 0.5336, 0.2473, 0.3742),
    "gigapath": (0.5508, 0.3708, 0.4768, 0.5538, 0.301, 0.186, 0.2391, 0.5399, 0.2493, 0.3853),
    "uni": (0.5702, 0.314, 0.4764, 0.6254, 0.263, 0.1762, 0.2427, 0.5511, 0.2565, 0.3862),
    "h0-mini": (0.5862, 0.3684, 0.4919, 0.6011, 0.2494, 0.1863, 0.267, 0.5481, 0.2629, 0.3957),
    "virchow": (0.5702, 0.3309, 0.4875, 0.6088, 0.311, 0.2019, 0.2637, 0.5459, 0.2594, 0.3977),
    "virchow2": (0.5922, 0.3465, 0.4661, 0.6174, 0.2578, 0.2084, 0.2788, 0.5605, 0.2582, 0.3984),
    "uni-v1.5": (0.5989, 0.3645, 0.4902, 0.6401, 0.2925, 0.224, 0.2522, 0.5586, 0.2597, 0.409),
    "h-optimus-0": (0.5982, 0.385, 0.4932, 0.6432, 0.2991, 0.2292, 0.2654, 0.5582, 0.2595, 0.4146),
}

#: ``{model: {task: r, ..., "average": r}}``
PUBLISHED: dict[str, dict[str, float]] = {
    model: {**dict(zip(PUBLISHED_TASKS, vals[:-1], strict=True)), "average": vals[-1]} for model, vals in _ROWS.items()
}


def published_rows(tasks: list[str]) -> dict[str, dict[str, float | None]]:
    """Per published model: the figure for each of ``tasks`` (None where HEST has no such task) and the average."""
    out: dict[str, dict[str, float | None]] = {}
    for model, row in PUBLISHED.items():
        out[model] = {t: row.get(t.upper()) for t in tasks}
        out[model]["average"] = row["average"]
    return out
