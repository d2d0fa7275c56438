"""hagekit: gene-aware pathology representation learning (HAGE, MICCAI 2025), end to end.

Importing ``hagekit`` is cheap: the public API below is loaded on first use, so that
``hagekit --help`` never imports torch.
"""

from __future__ import annotations

from hagekit._lazy import lazy_exports

__version__ = "0.1.0"

#: public name -> module that defines it
_API: dict[str, str] = {
    # errors and workspace
    "HagekitError": "hagekit.errors",
    "ConfigError": "hagekit.errors",
    "DataError": "hagekit.errors",
    "ProvenanceError": "hagekit.errors",
    "EncoderError": "hagekit.errors",
    "Workspace": "hagekit.workspace",
    # data
    "make_section": "hagekit.data.section",
    "read_section": "hagekit.data.section",
    "write_section": "hagekit.data.section",
    "list_sections": "hagekit.data.section",
    "SectionInfo": "hagekit.data.section",
    "section_info": "hagekit.data.section",
    "dataset_sections": "hagekit.data.section",
    "synthesize_dataset": "hagekit.data.synthetic",
    "prepare_her2st": "hagekit.data.her2st",
    "prepare_cscc": "hagekit.data.cscc",
    "prepare_visium": "hagekit.data.visium",
    "prepare_hest": "hagekit.data.hest",
    "prepare_dataset": "hagekit.data.prepare",
    "PrepareReport": "hagekit.data.prepare",
    "load_manifest": "hagekit.data.manifests",
    "list_manifests": "hagekit.data.manifests",
    "download": "hagekit.data.download",
    # genes
    "select_panel": "hagekit.genes.panel",
    "write_panel": "hagekit.genes.panel",
    "GeneEmbeddings": "hagekit.genes.embeddings",
    "load_gene_embeddings": "hagekit.genes.embeddings",
    "embeddings_for_panel": "hagekit.genes.embeddings",
    "embedding_training_sections": "hagekit.genes.embeddings",
    "write_gene_embeddings": "hagekit.genes.embeddings",
    "train_gene_embeddings": "hagekit.genes.coexpression",
    "coexpression_auc": "hagekit.genes.quality",
    # encoders and extraction
    "EncoderBundle": "hagekit.encoders",
    "create_encoder": "hagekit.encoders",
    "list_encoders": "hagekit.encoders",
    "register_encoder": "hagekit.encoders",
    "extract_sections": "hagekit.extract",
    "extract_slides": "hagekit.extract",
    "encode_images": "hagekit.extract",
    "ExtractSummary": "hagekit.extract",
    "open_slide": "hagekit.slides",
    "tissue_mask": "hagekit.slides",
    "plan_grid": "hagekit.slides",
    # HAGE
    "HAGEConfig": "hagekit.hage.model",
    "HAGEModel": "hagekit.hage.model",
    "HAGERegressor": "hagekit.hage.estimator",
    "build_ge_encoder": "hagekit.hage.ge_encoder",
    "export_encoder": "hagekit.hage.ge_encoder",
    "train_run": "hagekit.training.run",
    "predict_section": "hagekit.predict",
    "report_run": "hagekit.report",
    "run_demo": "hagekit.demo",
    # baselines and tables
    "bench_baselines": "hagekit.bench.compare",
    "run_methods": "hagekit.bench.compare",
    "paired_comparison": "hagekit.bench.compare",
    "bench_ablation": "hagekit.bench.ablation",
    "bench_grid": "hagekit.bench.ablation",
    "make_baseline": "hagekit.baselines",
    "list_baselines": "hagekit.baselines",
    # downstream benchmarks
    "run_linear_probe": "hagekit.bench.linear_probe",
    "ProbeConfig": "hagekit.bench.linear_probe",
    "open_patch_dataset": "hagekit.bench.patch_datasets",
    "read_pcam": "hagekit.bench.patch_datasets",
    "run_abmil": "hagekit.bench.abmil",
    "ABMILConfig": "hagekit.bench.abmil",
    "GatedAttentionMIL": "hagekit.bench.abmil",
    "read_slide_labels": "hagekit.bench.abmil",
    # shared building blocks
    "expression_targets": "hagekit.targets",
    "evaluate_section": "hagekit.metrics",
    "pearson_per_gene": "hagekit.metrics",
    "make_folds": "hagekit.training.splits",
    "load_dataset": "hagekit.training.dataset",
    "run_protocol": "hagekit.training.protocol",
    "read_features": "hagekit.io.h5",
    "write_features": "hagekit.io.h5",
    "read_gene_list": "hagekit.io.genelist",
    "write_gene_list": "hagekit.io.genelist",
}

__all__ = ["__version__", *_API]


__getattr__, __dir__ = lazy_exports(__name__, _API)
