"""The extraction loop: collected and streamed features agree, and streaming keeps no (N, D) array."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch

from hagekit.encoders.registry import EncoderBundle
from hagekit.extract.engine import EncoderSetup, run_encoder, stream_encoder

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class _Batches:
    """``n`` rows served as whole batches of ``b`` (like a worker decoding one h5 slice): (x, row ids)."""

    def __init__(self, n: int, b: int) -> None:
        self.n, self.b = n, b

    def __len__(self) -> int:
        return -(-self.n // self.b)

    def __getitem__(self, i: int):
        rows = torch.arange(i * self.b, min(self.n, (i + 1) * self.b))
        return rows[:, None, None, None].float().expand(-1, 3, 2, 2).contiguous(), rows


def _bundle(dim: int) -> EncoderSetup:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, dim)).eval()
    return EncoderSetup.of(EncoderBundle("fake", model, lambda x: x, dim, 2, "", True))


def test_streamed_batches_are_the_collected_rows_in_order():
    bundle, data = _bundle(8), _Batches(70, 16)
    collected, stats = run_encoder(bundle, data, batch_size=16, n_rows=70)
    got, ids = [], []
    streamed = stream_encoder(bundle, data, batch_size=16, n_rows=70,
                              on_features=lambda f, rest: (got.append(f.copy()), ids.append(rest[0].numpy())))
    assert collected.shape == (70, 8) and stats.n == streamed.n == 70
    np.testing.assert_array_equal(np.concatenate(ids), np.arange(70))
    np.testing.assert_array_equal(np.concatenate(got), collected)
    dumped = []
    again, _ = run_encoder(bundle, data, batch_size=16, n_rows=70, on_batch=lambda rest: dumped.append(rest[0]))
    np.testing.assert_array_equal(again, collected)
    assert torch.cat(dumped).tolist() == list(range(70))
    assert stream_encoder(bundle, _Batches(0, 16), on_features=lambda *_: None, n_rows=0).n == 0


def test_streaming_keeps_no_array_of_all_rows():
    n, dim, b = 4096, 1024, 128  # all rows: 16 MiB of float32; one batch: 0.5 MiB
    bundle, rows = _bundle(dim), [0]

    def sink(feats, rest):
        rows[0] += len(feats)

    tracemalloc.start()
    try:
        stream_encoder(bundle, _Batches(n, b), batch_size=b, on_features=sink, n_rows=n)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rows[0] == n
    assert peak < n * dim * 4 / 4, f"streaming peaked at {peak / 2**20:.1f} MiB"
