"""``hagekit bench``: baselines and the paper's tables, and downstream value of the encoder.

The group is assembled from two modules: ``bench_tables`` (baselines, ablation, grid) and
``bench_downstream`` (linear-probe, abmil); each exposes ``add_commands(bench_app)``.
"""

from __future__ import annotations

import importlib

import typer

bench_app = typer.Typer(
    help="Compare methods on identical features/folds, and measure downstream value.",
    no_args_is_help=True,
)

for _name in ("hagekit.cli.bench_tables", "hagekit.cli.bench_downstream", "hagekit.cli.bench_tune",
              "hagekit.cli.bench_hest"):
    importlib.import_module(_name).add_commands(bench_app)


def register(app: typer.Typer) -> None:
    app.add_typer(bench_app, name="bench")
