"""A synthetic ST dataset whose expression is learnable from the H&E-like image.

Each section is a grid of spots (pitch 100 µm, spot diameter 55 µm) on a rendered tissue
image (1 µm/px) with regions (tumour, stroma, fat, immune, necrosis) of distinct colour and
texture. Two smooth latent fields modulate the image (nuclear density, eosin/fibre density)
and the expression alike. Counts are negative binomial from region-specific gene programs
plus co-expressed gene modules driven by the latent fields and by shared per-spot noise, so
genes co-vary in blocks. Sections of one patient are serial: they share region layout up to
a small perturbation, and each patient has its own stain and expression shift.

With ``context_dependence`` c > 0 a spot's expression follows the tissue of its neighbourhood
too: its programs see ``(1 - c) * own + c * mean of the 8 surrounding spots`` (region fractions
and latent fields), which only a method that looks at the neighbours' images can recover.
"""

from __future__ import annotations

import json
import logging
import math
import string
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from hagekit.errors import ConfigError, DataError, at
from hagekit.progress import Reporter, track

__all__ = [
    "REGIONS", "SynthConfig", "synthesize_dataset", "section_names", "ModuleData", "ModuleSpec", "synthesize_modules",
]

log = logging.getLogger(__name__)

#: Tissue regions, in the order of their index in ``obs["region_id"]``.
REGIONS: tuple[str, ...] = ("tumour", "stroma", "fat", "immune", "necrosis")

MPP = 1.0  # µm per pixel of the rendered image
PITCH_UM = 100.0  # spot centre-to-centre distance
SPOT_DIAMETER_UM = 55.0
MARGIN_PX = 160  # image border around the spot grid (tissue edge, then glass)
LOWRES_FACTOR = 4  # the latent maps are computed at 1/4 of the image resolution

# Per-region rendering parameters: eosin base, large/small nuclei density (per px), fibres,
# fat membranes, cytoplasm mottling.
_RENDER = {
    "tumour": dict(eosin=0.35, large=1 / 140, small=1 / 2500, fibre=0.0, fat=0.0, mottle=0.25),
    "stroma": dict(eosin=0.55, large=1 / 2500, small=1 / 3000, fibre=0.55, fat=0.0, mottle=0.05),
    "fat": dict(eosin=0.04, large=1 / 20000, small=1 / 20000, fibre=0.0, fat=0.8, mottle=0.0),
    "immune": dict(eosin=0.25, large=1 / 3000, small=1 / 45, fibre=0.05, fat=0.0, mottle=0.05),
    "necrosis": dict(eosin=0.45, large=0.0, small=1 / 400, fibre=0.0, fat=0.0, mottle=0.45),
}
# Region prevalence bias added to the smooth region scores (tumour and stroma dominate).
_PREVALENCE = np.array([0.35, 0.3, 0.0, -0.05, -0.35])

# Optical densities of haematoxylin and eosin (Ruifrok & Johnston), normalised.
_H_OD = np.array([0.65, 0.70, 0.29])
_E_OD = np.array([0.07, 0.99, 0.11])
_H_OD = (_H_OD / np.linalg.norm(_H_OD)).astype(np.float32)
_E_OD = (_E_OD / np.linalg.norm(_E_OD)).astype(np.float32)

_MARKERS = {
    "tumour": "ERBB2 KRT8 KRT18 KRT19 EPCAM CDH1 GATA3 ESR1 FOXA1 MUC1 SCGB2A2 AGR2 TFF1 XBP1 SPDEF",
    "stroma": "COL1A1 COL1A2 COL3A1 FN1 DCN LUM POSTN SPARC VIM ACTA2 MMP2 TAGLN PDGFRB FBLN1 COL6A1",
    "fat": "ADIPOQ PLIN1 FABP4 LEP LPL CIDEA CD36 PPARG PLIN4 CFD GPD1 RBP4 SAA1 CIDEC TUSC5",
    "immune": "PTPRC CD3E CD8A CD19 MS4A1 CD74 HLA-DRA IGKC IGHG1 CXCL13 CCL19 CD79A LTB CD52 CORO1A",
    "necrosis": "VEGFA CA9 NDRG1 ADM BNIP3 SLC2A1 PGK1 LDHA ANGPTL4 ENO1 P4HA1 ERO1A MT2A HILPDA ANKRD37",
}
_MODULES = (
    "MKI67 TOP2A CCNB1 CDK1 BIRC5 UBE2C PCNA MCM2 TYMS CENPF AURKA PTTG1",
    "ISG15 IFI6 IFIT1 IFIT3 MX1 OAS1 IFI27 STAT1 IRF7 IFITM1 BST2 RSAD2",
    "HLA-A HLA-B HLA-C B2M TAP1 PSMB8 PSMB9 HLA-E HLA-F NLRC5 TAPBP PSME1",
    "MGP CFH C3 SERPINF1 IGFBP7 CXCL12 CST3 TIMP1 APOD GSN SOD3 CYR61",
    "RPL3 RPL4 RPS6 RPS3 RPL10 RPS18 EEF1A1 TPT1 RPLP1 RPS12 RPL13 RPS27A",
    "JUN FOS EGR1 ATF3 IER2 DUSP1 JUNB FOSB NR4A1 KLF6 ZFP36 IER3",
)
_BACKGROUND = (
    "ACTB GAPDH TMSB4X MALAT1 B2M FTL FTH1 TPT1 EEF2 HSP90AB1 PPIA UBC YWHAZ TUBA1B NPM1 "
    "HNRNPA1 CALM2 SRSF3 CFL1 PFN1 MYL6 ARPC2 OAZ1 SERF2 UBB NACA H3F3B CD63 PSAP SPCS2"
)


@dataclass(frozen=True)
class SynthConfig:
    """Settings of one synthetic dataset (recorded in each section's ``source``)."""

    n_sections: int = 4
    n_patients: int = 2
    """Sections, split among this many patients (serial sections of one patient share their layout)."""
    dataset: str = "synth"
    n_spots: int = 300
    n_genes: int = 200
    seed: int = 0
    context_dependence: float = 0.0
    """Weight of the neighbourhood in each spot's expression (0: none, 1: neighbours only)."""

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the option when a value is out of range."""
        if not 1 <= self.n_sections <= 1000:
            raise ConfigError(f"--sections: {self.n_sections} is out of range (1..1000)")
        if not 4 <= self.n_spots <= 20000:
            raise ConfigError(f"--spots: {self.n_spots} is out of range (4..20000)")
        if not 10 <= self.n_genes <= 50000:
            raise ConfigError(f"--genes: {self.n_genes} is out of range (10..50000)")
        if not 1 <= self.n_patients <= min(26, self.n_sections):
            raise ConfigError(
                f"--patients: {self.n_patients} is out of range (1..{min(26, self.n_sections)}, at most one per section)"
            )
        if not 0.0 <= self.context_dependence <= 1.0:
            raise ConfigError(f"--context-dependence: {self.context_dependence} is out of range (0..1)")

    @classmethod
    def resolve(cls, n_patients: int | None = None, **settings: Any) -> SynthConfig:
        """The config of ``settings`` (field names), with ``n_patients`` None meaning
        ``min(2, n_sections)`` (what ``data synth`` does without ``--patients``); not validated."""
        cfg = cls(**settings)
        return replace(cfg, n_patients=n_patients if n_patients is not None else min(2, cfg.n_sections))

    def source(self) -> str:
        """A stable description of the generator settings (what makes two runs identical); a
        setting at its neutral value is left out, so older datasets keep their description."""
        settings = asdict(self)
        if not settings["context_dependence"]:
            del settings["context_dependence"]
        return "hagekit.synthetic " + json.dumps(settings, sort_keys=True)


@dataclass
class _GeneModel:
    """Gene names and the parameters of the expression model shared by all sections."""

    names: list[str]
    base: np.ndarray  # (G,) log baseline rate
    region_effect: np.ndarray  # (R, G) log fold change per region
    module_genes: np.ndarray  # (M, G) loading of gene g on module m
    module_fields: np.ndarray  # (M, 2) weights of the two latent fields on module m
    module_region: np.ndarray  # (M, R) region loadings of each module
    theta: np.ndarray  # (G,) NB inverse dispersion


def section_names(n_sections: int, n_patients: int) -> list[tuple[str, str]]:
    """``(section, patient)`` pairs like her2st's: patient letter + serial number (A1, A2, B1...)."""
    letters = string.ascii_uppercase
    per = [n_sections // n_patients + (1 if p < n_sections % n_patients else 0) for p in range(n_patients)]
    return [(f"{letters[p]}{k + 1}", letters[p]) for p in range(n_patients) for k in range(per[p])]


def _gene_model(n_genes: int, rng: np.random.Generator) -> _GeneModel:
    R = len(REGIONS)
    n_markers = max(1, round(0.06 * n_genes))
    n_modules = max(1, min(len(_MODULES), n_genes // 40))
    module_size = max(2, round(0.05 * n_genes))
    while R * n_markers + n_modules * module_size > n_genes - 1:
        if module_size > 2:
            module_size -= 1
        elif n_markers > 1:
            n_markers -= 1
        else:
            n_modules -= 1
    used: set[str] = set()
    names: list[str] = []
    counter = 0

    def take(pool: Sequence[str], k: int) -> list[str]:
        nonlocal counter
        out = []
        for sym in pool:
            if len(out) == k:
                break
            if sym not in used:
                out.append(sym)
                used.add(sym)
        while len(out) < k:
            counter += 1
            sym = f"GENE{counter:04d}"
            if sym not in used:
                out.append(sym)
                used.add(sym)
        return out

    marker_idx = []
    for region in REGIONS:
        start = len(names)
        names += take(_MARKERS[region].split(), n_markers)
        marker_idx.append(np.arange(start, len(names)))
    module_idx = []
    for m in range(n_modules):
        start = len(names)
        names += take(_MODULES[m % len(_MODULES)].split(), module_size)
        module_idx.append(np.arange(start, len(names)))
    names += take(_BACKGROUND.split(), n_genes - len(names))

    G = n_genes
    base = rng.normal(0.6, 0.9, G)
    base[np.concatenate(marker_idx)] -= 0.6
    region_effect = rng.normal(0.0, 0.4, (R, G))
    for r, idx in enumerate(marker_idx):
        region_effect[r, idx] += rng.uniform(1.8, 3.2, len(idx))
        other = [o for o in range(R) if o != r]
        region_effect[rng.choice(other), idx] += rng.uniform(0.3, 1.0, len(idx))  # partial sharing
    module_genes = np.zeros((n_modules, G))
    for m, idx in enumerate(module_idx):
        module_genes[m, idx] = rng.uniform(0.6, 1.2, len(idx))
    module_fields = rng.normal(0.0, 1.0, (n_modules, 2))
    module_fields /= np.linalg.norm(module_fields, axis=1, keepdims=True)
    module_region = rng.normal(0.0, 0.8, (n_modules, R))
    theta = rng.uniform(5.0, 20.0, G)
    return _GeneModel(names, base, region_effect, module_genes, module_fields, module_region, theta)


def _smooth_field(shape: tuple[int, int], sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian random field with unit standard deviation (``sigma`` in grid cells).

    Drawn on a grid ``sigma / 3`` times coarser and interpolated, which is the same field
    up to interpolation error and ~100x cheaper for the large ``sigma`` used here.
    """
    from scipy.ndimage import gaussian_filter, zoom

    c = max(1.0, sigma / 3.0)
    coarse = (max(2, math.ceil(shape[0] / c) + 2), max(2, math.ceil(shape[1] / c) + 2))
    f = gaussian_filter(rng.standard_normal(coarse).astype(np.float32), sigma / c, mode="wrap")
    if c > 1:
        f = zoom(f, (shape[0] / (coarse[0] - 2), shape[1] / (coarse[1] - 2)), order=1, grid_mode=False)
    f = f[: shape[0], : shape[1]]
    return (f - f.mean()) / (f.std() + 1e-8)


def _layout(shape_lr: tuple[int, int], patient_rng: np.random.Generator, section_rng: np.random.Generator):
    """Region labels and the two latent fields at low resolution (serial sections of one patient)."""
    R = len(REGIONS)
    scale = 260.0 / LOWRES_FACTOR  # region size ~ a few spots
    scores = np.stack([_smooth_field(shape_lr, scale, patient_rng) for _ in range(R)])
    scores += 0.35 * np.stack([_smooth_field(shape_lr, scale, section_rng) for _ in range(R)])
    scores += _PREVALENCE[:, None, None] + patient_rng.normal(0, 0.2, R)[:, None, None]
    labels = np.argmax(scores, axis=0).astype(np.int8)
    fields = np.stack(
        [
            0.85 * _smooth_field(shape_lr, 340.0 / LOWRES_FACTOR, patient_rng)
            + 0.5 * _smooth_field(shape_lr, 340.0 / LOWRES_FACTOR, section_rng)
            for _ in range(2)
        ]
    )
    fields /= fields.std(axis=(1, 2), keepdims=True)
    return labels, np.clip(fields, -2.5, 2.5)


def _upsample(a: np.ndarray, factor: int, shape: tuple[int, int]) -> np.ndarray:
    return np.repeat(np.repeat(a, factor, axis=-2), factor, axis=-1)[..., : shape[0], : shape[1]]


def _render(
    labels_lr: np.ndarray,
    fields_lr: np.ndarray,
    tissue_lr: np.ndarray,
    shape: tuple[int, int],
    stain: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Render the RGB uint8 H&E-like image (H, W, 3) from the low-resolution maps."""
    from scipy.ndimage import gaussian_filter, zoom

    H, W = shape
    tissue = _upsample(tissue_lr, LOWRES_FACTOR, shape)
    par = {k: np.array([_RENDER[r][k] for r in REGIONS], dtype=np.float32) for k in _RENDER["tumour"]}
    lr = {k: v[labels_lr] for k, v in par.items()}
    cell = np.exp(0.6 * fields_lr[0]).astype(np.float32)  # latent field 0: nuclear density
    eos = np.exp(0.4 * fields_lr[1]).astype(np.float32)  # latent field 1: eosin / fibre density

    def up(a: np.ndarray) -> np.ndarray:
        return _upsample(a, LOWRES_FACTOR, shape)

    def sd(a: np.ndarray) -> float:
        return float(a[::7, ::7].std()) + 1e-8

    large = (rng.random(shape, dtype=np.float32) < up(lr["large"] * cell)).astype(np.float32)
    small = (rng.random(shape, dtype=np.float32) < up(lr["small"] * cell)).astype(np.float32)
    nuclei = np.minimum(gaussian_filter(large, 2.6) * (2 * math.pi * 2.6**2) * 1.1, 1.3)
    nuclei += np.minimum(gaussian_filter(small, 1.3) * (2 * math.pi * 1.3**2) * 1.2, 1.4)

    # stroma fibres: thin (1 px) and long (~10 px) streaks; drawn at 1/3 x-resolution
    fibre = gaussian_filter(rng.standard_normal((H, math.ceil(W / 3)), dtype=np.float32), (1.2, 3.0))
    fibre = np.repeat(np.clip(fibre / sd(fibre), 0, None), 3, axis=1)[:, :W] * up(lr["fibre"] * eos)
    # fat: pale cells bounded by thin membranes (level lines of a smooth field)
    membrane = gaussian_filter(rng.standard_normal((H // 2 + 1, W // 2 + 1), dtype=np.float32), 7.0)
    membrane = zoom(membrane / sd(membrane), 2, order=1)[:H, :W]
    fat = up(lr["fat"])
    in_fat = fat > 0
    membrane[~in_fat] = 0.0
    membrane[in_fat] = np.exp(-(np.sin(membrane[in_fat] * 5.0) ** 2) / 0.02) * fat[in_fat]
    # cytoplasm mottling (granular eosin), drawn at half resolution
    mottle = gaussian_filter(rng.standard_normal((H // 2 + 1, W // 2 + 1), dtype=np.float32), 1.0)
    mottle = _upsample(mottle / sd(mottle), 2, shape) * up(lr["mottle"])

    h_amt = (0.06 + 0.95 * nuclei) * float(stain[0])
    e_amt = up(lr["eosin"] * eos) * (1 + 0.35 * mottle)
    e_amt += 0.6 * fibre + 0.5 * membrane
    e_amt *= float(stain[1])
    h_amt *= tissue
    e_amt *= tissue
    rgb = np.empty((H, W, 3), dtype=np.float32)
    noise = 3.0 * rng.standard_normal((H, W), dtype=np.float32)
    for c in range(3):
        rgb[..., c] = 245.0 * np.exp(-1.6 * (h_amt * _H_OD[c] + e_amt * _E_OD[c])) + noise
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _synthesize_section(
    genes: _GeneModel,
    *,
    n_spots: int,
    patient_seed: Sequence[int],
    section_seed: Sequence[int],
    context: float = 0.0,
):
    """Generate one section: (image uint8, counts (N, G), barcodes, spatial, obs columns)."""
    from scipy.ndimage import uniform_filter

    cols = math.ceil(math.sqrt(n_spots))
    rows = math.ceil(n_spots / cols)
    pitch = PITCH_UM / MPP
    W = int(2 * MARGIN_PX + (cols - 1) * pitch)
    H = int(2 * MARGIN_PX + (rows - 1) * pitch)
    shape_lr = (math.ceil(H / LOWRES_FACTOR), math.ceil(W / LOWRES_FACTOR))
    prng = np.random.default_rng(list(patient_seed))
    srng = np.random.default_rng(list(section_seed))
    labels_lr, fields_lr = _layout(shape_lr, prng, srng)

    # tissue: the spot grid plus a wobbly rim, glass outside
    yy, xx = np.mgrid[0 : shape_lr[0], 0 : shape_lr[1]] * LOWRES_FACTOR
    rim = MARGIN_PX * 0.55 + 25 * _smooth_field(shape_lr, 40 / LOWRES_FACTOR, srng)
    dx = np.maximum(np.maximum(MARGIN_PX - xx, xx - (W - MARGIN_PX)), 0)
    dy = np.maximum(np.maximum(MARGIN_PX - yy, yy - (H - MARGIN_PX)), 0)
    tissue_lr = (np.hypot(dx, dy) < rim).astype(np.float32)

    stain = np.array([1.0, 1.0]) * np.exp(prng.normal(0, 0.08, 2)) * np.exp(srng.normal(0, 0.04, 2))
    image = _render(labels_lr, fields_lr, tissue_lr, (H, W), stain, srng)

    idx = np.arange(n_spots)
    ax, ay = idx % cols, idx // cols
    spatial = np.stack([MARGIN_PX + ax * pitch, MARGIN_PX + ay * pitch], axis=1).astype(np.float64)
    # region fractions inside each spot (55 µm disc ~ a 14-cell box at 1/4 resolution)
    R = len(REGIONS)
    onehot = (labels_lr[None] == np.arange(R)[:, None, None]).astype(np.float32)
    box = max(1, round(SPOT_DIAMETER_UM / MPP / LOWRES_FACTOR))
    frac_map = uniform_filter(onehot, size=(1, box, box), mode="nearest")
    iy = np.clip((spatial[:, 1] / LOWRES_FACTOR).astype(int), 0, shape_lr[0] - 1)
    ix = np.clip((spatial[:, 0] / LOWRES_FACTOR).astype(int), 0, shape_lr[1] - 1)
    frac = frac_map[:, iy, ix].T  # (N, R)
    fld = fields_lr[:, iy, ix].T  # (N, 2)

    ef, efld = frac, fld  # the tissue a spot's expression follows: its own, blended with its neighbours'
    if context > 0:
        ef, efld = ((1 - context) * a + context * _grid_neighbour_mean(a, spatial, pitch) for a in (frac, fld))
    # expression: region programs + modules (latent fields, region, shared spot noise)
    patient_shift = prng.normal(0, 0.15, len(genes.names))
    act = efld @ genes.module_fields.T + ef @ genes.module_region.T + 0.3 * srng.standard_normal((n_spots, len(genes.module_fields)))
    log_mu = genes.base + patient_shift + ef @ genes.region_effect + act @ genes.module_genes
    lib = np.exp(0.3 * fld[:, 0] + srng.normal(0, 0.15, n_spots))
    mu = lib[:, None] * np.exp(log_mu)
    lam = srng.gamma(genes.theta, mu / genes.theta)
    counts = srng.poisson(lam).astype(np.int32)

    barcodes = [f"{x}x{y}" for x, y in zip(ax, ay, strict=True)]
    dominant = np.argmax(frac, axis=1)
    obs = {
        "array_x": ax.astype(np.int64),
        "array_y": ay.astype(np.int64),
        "label": [REGIONS[d] for d in dominant],
        **{f"frac_{r}": frac[:, i].astype(np.float32) for i, r in enumerate(REGIONS)},
    }
    return image, counts, barcodes, spatial, obs


def _grid_neighbour_mean(values: np.ndarray, spatial: np.ndarray, pitch: float) -> np.ndarray:
    """Mean of ``values`` over each spot's neighbours within 1.5 pitches (the 8 around a grid
    spot; fewer at the edge)."""
    from scipy.sparse import coo_matrix
    from scipy.spatial import cKDTree

    pairs = cKDTree(spatial).query_pairs(1.5 * pitch, output_type="ndarray")
    n = len(spatial)
    rows, cols = np.concatenate([pairs[:, 0], pairs[:, 1]]), np.concatenate([pairs[:, 1], pairs[:, 0]])
    adj = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n)).tocsr()
    deg = np.maximum(np.asarray(adj.sum(axis=1)).ravel(), 1.0)
    return np.asarray(adj @ values) / deg[:, None]


def _kept(path: Path, image_path: Path, cfg: SynthConfig) -> bool:
    """True when ``path`` (and its image) was made with ``cfg``; made otherwise: one line, refused."""
    from hagekit.data.section import read_section

    existing = read_section(path, backed=True)
    same = existing.uns["hagekit"].get("source") == cfg.source()
    existing.file.close()
    if same and image_path.is_file():
        log.info("%s: exists with the same settings, kept", path)
        return True
    raise DataError(at(path, "exists with other synthetic settings; pass --overwrite or another --out"))


def _write_synthetic_section(
    cfg: SynthConfig, genes: _GeneModel, section: tuple[str, str], seeds: tuple[int, int], paths: tuple[Path, Path]
) -> None:
    """Render and write one section (``seeds``: patient index, section index; ``paths``: h5ad, image)."""
    from hagekit.data.section import SectionImage, SectionLabels, make_section, write_section
    from hagekit.io.atomic import atomic_path
    from hagekit.slides.info import thumbnail_from_array
    from hagekit.slides.reader import pil_image_module

    (name, patient), (p_index, k), (path, image_path) = section, seeds, paths
    image, counts, barcodes, spatial, obs = _synthesize_section(
        genes,
        n_spots=cfg.n_spots,
        patient_seed=[cfg.seed, 1, p_index],
        section_seed=[cfg.seed, 2, k],
        context=cfg.context_dependence,
    )
    thumb, scale = thumbnail_from_array(image)
    adata = make_section(
        counts, barcodes, genes.names, spatial,
        SectionLabels(cfg.dataset, name, patient, source=cfg.source()),
        image=SectionImage(image_path, MPP, SPOT_DIAMETER_UM, thumb, scale),
        obs=obs,
    )
    with atomic_path(image_path) as tmp:
        pil_image_module().fromarray(image).save(tmp, format="JPEG", quality=92)
    write_section(adata, path)


def synthesize_dataset(
    out_root: Path,
    config: SynthConfig = SynthConfig(),
    *,
    overwrite: bool = False,
    progress: Reporter | None = None,
) -> list[Path]:
    """Write ``<out_root>/<dataset>/<section>.h5ad`` (+ ``images/<section>.jpg``) for a synthetic set.

    ``config.context_dependence`` (0..1): how much each spot's expression follows its neighbours'
    tissue; :meth:`SynthConfig.resolve` gives ``data synth``'s default number of patients.

    Deterministic per seed. Existing sections made with the same settings are kept;
    ones made with other settings raise unless ``overwrite``. Returns the section paths.
    """
    from hagekit.io.locks import each_locked
    from hagekit.workspace import canonical_dataset

    cfg = replace(config, dataset=canonical_dataset(config.dataset), context_dependence=float(config.context_dependence))
    cfg.validate()
    folder = Path(out_root) / cfg.dataset
    genes = _gene_model(cfg.n_genes, np.random.default_rng([cfg.seed, 7919]))
    names = section_names(cfg.n_sections, cfg.n_patients)
    patient_index = {p: i for i, p in enumerate(dict.fromkeys(p for _, p in names))}
    paths: dict[int, Path] = {}

    def one(item: tuple[int, tuple[str, str]]) -> None:
        k, (section, patient) = item
        path = folder / f"{section}.h5ad"
        image_path = folder / "images" / f"{section}.jpg"
        if not (path.exists() and not overwrite and _kept(path, image_path, cfg)):
            _write_synthetic_section(cfg, genes, (section, patient), (patient_index[patient], k), (path, image_path))
        paths[k] = path

    # under per-section locks: two synths into one folder write each section once
    items = track(list(enumerate(names)), f"synth {cfg.dataset}", progress=progress)
    each_locked(items, lambda it: folder, lambda it: f".{it[1][0]}.h5ad", one)
    paths_list = [paths[k] for k in sorted(paths)]
    log.info("synthetic dataset %s: %d sections under %s", cfg.dataset, len(paths_list), folder)
    return paths_list


@dataclass
class ModuleData:
    """Feature-level synthetic ST data with planted gene modules (see :func:`synthesize_modules`)."""

    features: dict[str, np.ndarray]  #: section -> (N, D) image-like features
    counts: dict[str, np.ndarray]  #: section -> (N, G) integer counts
    patients: dict[str, str]  #: section -> patient
    genes: list[str]
    gene_embeddings: np.ndarray  #: (G, d_g): module membership + noise, in gene order
    loadings: np.ndarray  #: (M, G) planted module loadings


@dataclass(frozen=True)
class ModuleSpec:
    """Sizes, noise levels and seed of :func:`synthesize_modules`'s data."""

    n_sections: int = 4
    n_spots: int = 300
    """Sections (two patients when there are two or more) and spots per section."""
    n_genes: int = 120
    n_modules: int = 6
    """Genes, each loading on one of the modules."""
    n_states: int = 5
    """Tissue states, each with its module-activity profile."""
    dim: int = 48
    d_gene: int = 32
    """Widths of the image-like features and of the gene embeddings."""
    feature_noise: float = 1.0
    embedding_noise: float = 0.3
    """Gaussian noise on the features and on the gene embeddings."""
    seed: int = 0


def synthesize_modules(spec: ModuleSpec = ModuleSpec()) -> ModuleData:
    """Spots whose expression is driven by gene modules that the gene embeddings encode.

    Each spot has a tissue state (``n_states``, spatially unstructured) with a module-activity
    profile plus per-spot variation; module m raises the log rate of its genes (each gene loads
    on one module). Features are a fixed random non-linear map of the module activities plus
    Gaussian noise (``feature_noise``), so the image carries the modules only indirectly. A
    gene's embedding is its module's vector (scaled by its loading) plus noise
    (``embedding_noise``): genes of one module sit together, as co-expression embeddings place
    them. Seeded: same arguments, same data. Used by the GE/HA ablation experiment.
    """
    n_spots, n_states, dim, d_gene = spec.n_spots, spec.n_states, spec.dim, spec.d_gene
    rng = np.random.default_rng(spec.seed)
    G, M = int(spec.n_genes), int(spec.n_modules)
    module_of = np.arange(G) % M
    loadings = np.zeros((M, G))
    loadings[module_of, np.arange(G)] = rng.uniform(0.5, 1.5, G)
    profiles = rng.gamma(1.0, 1.0, (n_states, M))
    base = rng.normal(0.5, 0.5, G)
    w1 = rng.normal(0, 1.0, (M, 64)) / np.sqrt(M)
    w2 = rng.normal(0, 1.0, (64, dim)) / np.sqrt(64)
    module_vecs = rng.normal(0, 1.0, (M, d_gene))
    emb = loadings.T @ module_vecs + spec.embedding_noise * rng.normal(0, 1.0, (G, d_gene))
    feats, counts, patients = {}, {}, {}
    for name, patient in section_names(spec.n_sections, max(1, min(2, spec.n_sections))):
        state = rng.integers(0, n_states, n_spots)
        act = profiles[state] * np.exp(rng.normal(0, 0.3, (n_spots, M)))
        x = np.tanh(act @ w1) @ w2 + spec.feature_noise * rng.normal(0, 1.0, (n_spots, dim))
        mu = np.exp(base + act @ loadings - 1.0) * rng.lognormal(0, 0.2, (n_spots, 1)) * 3.0
        counts[name] = rng.poisson(rng.gamma(5.0, mu / 5.0)).astype(np.int32)
        feats[name] = x.astype(np.float32)
        patients[name] = patient
    genes = [f"G{g:04d}" for g in range(G)]
    return ModuleData(feats, counts, patients, genes, emb.astype(np.float32), loadings)
