"""``hagekit bench``: baselines and the paper's tables, and downstream value of the encoder.

Every subcommand is an entry of :data:`BENCHMARKS` (a :class:`hagekit.registry.Registry`):
name -> ``"module:command"`` (a Typer command function), its help from the function's docstring;
``params`` are the keywords of ``bench_app.command``. A new benchmark is one command function in
its own module plus one ``BENCHMARKS.register`` line here.
"""

from __future__ import annotations

import typer

from hagekit.registry import Registry

bench_app = typer.Typer(
    help="Compare methods on identical features/folds, and measure downstream value.",
    no_args_is_help=True,
)

#: The ``bench`` subcommands, in ``--help`` order.
BENCHMARKS: Registry = Registry("benchmark", option="hagekit bench")
BENCHMARKS.register("baselines", "hagekit.cli.bench_tables:baselines", params={"no_args_is_help": False})
BENCHMARKS.register("ablation", "hagekit.cli.bench_tables:ablation", params={"no_args_is_help": False})
BENCHMARKS.register("grid", "hagekit.cli.bench_tables:grid", params={"no_args_is_help": False})
BENCHMARKS.register("linear-probe", "hagekit.cli.bench_downstream:linear_probe", params={"no_args_is_help": True})
BENCHMARKS.register("abmil", "hagekit.cli.bench_downstream:abmil", params={"no_args_is_help": True})
BENCHMARKS.register("tune", "hagekit.cli.bench_tune:tune", params={"no_args_is_help": False})
BENCHMARKS.register("hest", "hagekit.cli.bench_hest:hest", params={"no_args_is_help": True})

for _name, _entry in BENCHMARKS.items():
    bench_app.command(_name, **_entry.params)(_entry.load())


def register(app: typer.Typer) -> None:
    app.add_typer(bench_app, name="bench")
