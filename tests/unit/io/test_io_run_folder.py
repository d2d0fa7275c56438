"""RunFolder: the one class that writes a run folder and reads it back.

``fixtures/run_folder_5d5b5eb`` was written by the protocol of 5d5b5eb (before RunFolder) on the
toy data of toys/protocol_toy.py (one trial, a least-squares estimator that saves ``w.npy``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from toys import protocol_toy

from hagekit.errors import ProvenanceError
from hagekit.io.locks import ItemLock, LockInfo
from hagekit.io.run_folder import RunFolder
from hagekit.training.dataset import load_dataset
from hagekit.training.protocol import ProtocolSettings, run_protocol

OLD_RUN = Path(__file__).with_name("fixtures") / "run_folder_5d5b5eb"
OLD_SETTINGS = {"trials": 1, "seed": 0, "method": "linear", "config": {"kind": "linear", "params": {"alpha": 1.0}}}


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_written_folder_reads_back(tmp_path: Path):
    run = RunFolder(tmp_path / "run")
    record = {"protocol": {"method": "m", "seed": 0, "split": "section", "path": Path("x")}, "config": {"a": 1}}
    run.start(record, ["G1", "G2"], overwrite=False)
    assert run.read_config() == {"protocol": {"method": "m", "seed": 0, "split": "section", "path": "x"},
                                 "config": {"a": 1}}
    assert run.genes_path.read_text() == "G1\nG2\n" and run.read_genes() == ["G1", "G2"]
    result = {"rows": [{"section": "A1", "pcc_all": 0.5}], "per_gene_pcc": {"A1": [0.1, None]}}
    tdir = run.write_trial("A1", 0, result, lambda d: (d / "model.safetensors").write_bytes(b"weights"))
    assert tdir == run.path / "A1" / "trial0" and (tdir / "model.safetensors").read_bytes() == b"weights"
    run.write_trial("A2", 1, result)  # no model
    (run.path / "A1" / "trialx").mkdir()  # not a trial folder
    (run.path / "A1" / "trialx" / "model.safetensors").write_bytes(b"")
    assert run.read_trial("A1", 0) == result and run.read_trial("A1", 1) is None
    assert run.trials_with("model.safetensors") == {("A1", 0): tdir}
    assert set(run.trials_with("metrics.json")) == {("A1", 0), ("A2", 1)}
    assert run.read_splits() is None and run.metrics_rows() == []
    rows = [{"fold": "A1", "trial": 0, "section": "A1", "pcc_all": 0.5, "extra": "not a column"}]
    run.write_tables(rows, ["fold", "trial", "section", "pcc_all"], splits={"split": "section", "trials": []},
                     summary={"method": "m"})
    assert run.metrics_rows() == [{"fold": "A1", "trial": "0", "section": "A1", "pcc_all": "0.5"}]
    assert run.read_splits() == {"split": "section", "trials": []}
    assert json.loads(run.summary_path.read_text()) == {"method": "m"}
    assert RunFolder.trial_number(RunFolder.trial_name(12)) == 12 and RunFolder.trial_number("trial") is None
    lock = run.try_lock_trial("A1", 1)  # one process trains a trial; the others see who holds it
    assert isinstance(lock, ItemLock) and (run.path / "A1" / ".trial1.lock").is_file()
    assert isinstance(run.try_lock_trial("A1", 1), LockInfo)
    lock.release()
    again = run.try_lock_trial("A1", 1)
    assert isinstance(again, ItemLock)
    again.release()
    # resuming: the same record is accepted, another is refused by name, --overwrite forgets the trials
    run.start(record, ["G1", "G2"], overwrite=False)
    other = {**record, "protocol": {**record["protocol"], "seed": 1, "path": "moved"}}
    with pytest.raises(ProvenanceError, match=r"other settings \(seed\)"):
        run.start(other, ["G1", "G2"], overwrite=False)
    run.start(other, ["G1", "G2"], overwrite=True)
    assert run.read_trial("A1", 0) is None and (tdir / "model.safetensors").is_file()


def test_folder_written_before_runfolder_reads_and_resumes_byte_for_byte(tmp_path: Path):
    root, feats = tmp_path / "data", tmp_path / "feats"
    for i, (s, p) in enumerate([("A1", "A"), ("A2", "A"), ("B1", "B")]):
        protocol_toy.write_toy_section(root, feats, s, p, i)
    out = tmp_path / "run"
    shutil.copytree(OLD_RUN, out)
    before = _files(out)
    run = RunFolder(out)
    assert run.read_genes() == protocol_toy.GENES
    assert run.read_config()["protocol"]["method"] == "linear"
    assert set(run.trials_with("w.npy")) == {("A1", 0), ("A2", 0), ("B1", 0)}
    assert [r["section"] for r in run.metrics_rows()] == ["A1", "A2", "B1"]
    assert [r["name"] for r in run.read_splits()["trials"]] == ["A1", "A2", "B1"]
    saved = run.read_trial("B1", 0)
    assert saved is not None and len(saved["per_gene_pcc"]["B1"]) == len(protocol_toy.GENES)

    protocol_toy.LoadableEstimator.calls = 0
    data = load_dataset(root, "toy", feats, protocol_toy.GENES)
    res = run_protocol(data, lambda ctx: protocol_toy.LoadableEstimator(ctx.seed), ProtocolSettings(out_dir=out, **OLD_SETTINGS),
                       estimator_type=protocol_toy.LoadableEstimator)
    assert protocol_toy.LoadableEstimator.calls == 0  # every trial resumed
    assert res.rows == [r for f in ("A1", "A2", "B1") for r in run.read_trial(f, 0)["rows"]]
    assert _files(out) == before  # rewritten by this version: the same bytes


def test_older_record_without_inputs_is_compared_by_its_genes_txt(tmp_path: Path):
    out = tmp_path / "run"
    shutil.copytree(OLD_RUN, out)
    run = RunFolder(out)
    new = run.read_config()
    old = json.loads(json.dumps(new))
    del old["protocol"]["inputs"]  # what 00ca6a1 recorded: no digests
    old["config"]["data_root"] = "/somewhere/else"  # locations are not part of a run's identity
    assert run.differences(old, new, protocol_toy.GENES) == []
    assert run.differences(old, new, list(reversed(protocol_toy.GENES))) == ["inputs.genes"]
    assert run.differences(new, {**new, "protocol": {**new["protocol"], "trials": 2}}, protocol_toy.GENES) == ["trials"]
