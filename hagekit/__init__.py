"""hagekit: gene-aware pathology representation learning (HAGE, MICCAI 2025), end to end.

Importing ``hagekit`` is cheap: the public API below is loaded on first use, so that
``hagekit --help`` never imports torch.
"""

from __future__ import annotations

from hagekit._lazy import by_module, lazy_exports

__version__ = "0.1.0"

#: module -> the public names it defines (loaded on first use)
_API = by_module(
    {
        # errors and workspace
        "hagekit.errors": ["HagekitError", "ConfigError", "DataError", "ProvenanceError", "EncoderError"],
        "hagekit.workspace": ["Workspace"],
        # data
        "hagekit.data.section": ["make_section", "read_section", "write_section", "list_sections", "SectionInfo", "section_info", "dataset_sections"],
        "hagekit.data.synthetic": ["synthesize_dataset"],
        "hagekit.data.her2st": ["prepare_her2st"],
        "hagekit.data.cscc": ["prepare_cscc"],
        "hagekit.data.visium": ["prepare_visium"],
        "hagekit.data.stutility": ["prepare_stutility"],
        "hagekit.data.hest": ["prepare_hest"],
        "hagekit.data.prepare": ["prepare_dataset", "PrepareReport"],
        "hagekit.data.manifests": ["load_manifest", "list_manifests"],
        "hagekit.data.download": ["download"],
        # genes
        "hagekit.genes.panel": ["select_panel", "write_panel"],
        "hagekit.genes.embeddings": ["GeneEmbeddings", "load_gene_embeddings", "embeddings_for_panel", "embedding_training_sections", "write_gene_embeddings"],
        "hagekit.genes.coexpression": ["train_gene_embeddings"],
        "hagekit.genes.quality": ["coexpression_auc"],
        # encoders and extraction
        "hagekit.encoders": ["EncoderBundle", "create_encoder", "list_encoders", "register_encoder"],
        "hagekit.extract": ["extract_sections", "extract_slides", "encode_images", "ExtractSummary", "EncoderSpec", "ExtractionSpec", "TilingSpec"],
        "hagekit.slides": ["open_slide", "tissue_mask", "plan_grid"],
        # HAGE
        "hagekit.hage.model": ["HAGEConfig", "HAGEModel"],
        "hagekit.hage.estimator": ["HAGERegressor"],
        "hagekit.hage.ge_encoder": ["build_ge_encoder", "export_encoder"],
        "hagekit.training.run": ["train_run"],
        "hagekit.predict": ["predict_section", "ModelChoice", "PlotRequest"],
        "hagekit.report": ["report_run"],
        "hagekit.demo": ["run_demo"],
        # baselines and tables
        "hagekit.bench.expression.compare": ["bench_baselines", "run_methods"],
        "hagekit.bench.expression.statistics": ["paired_comparison"],
        "hagekit.bench.expression.ablation": ["bench_ablation", "bench_grid"],
        "hagekit.baselines": ["make_baseline", "list_baselines"],
        # downstream benchmarks
        "hagekit.bench.downstream.linear_probe": ["run_linear_probe", "ProbeConfig"],
        "hagekit.bench.downstream.patch_datasets": ["open_patch_dataset", "read_pcam"],
        "hagekit.bench.downstream.abmil": ["run_abmil", "ABMILConfig", "GatedAttentionMIL", "read_slide_labels"],
        # shared building blocks
        "hagekit.targets": ["expression_targets"],
        "hagekit.metrics": ["evaluate_section", "pearson_per_gene"],
        "hagekit.training.splits": ["make_folds"],
        "hagekit.training.dataset": ["load_dataset"],
        "hagekit.training.protocol": ["run_protocol"],
        "hagekit.io.h5": ["read_features", "write_features"],
        "hagekit.io.genelist": ["read_gene_list", "write_gene_list"],
    }
)

__all__ = ["__version__", *_API]


__getattr__, __dir__ = lazy_exports(__name__, _API)
