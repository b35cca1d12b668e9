"""The batcher: concurrent callers share forward passes and each gets its own rows back."""

from __future__ import annotations

import threading

import numpy as np

from limner.jobs import Batcher


def test_concurrent_callers_share_batches(lite0) -> None:
    rng = np.random.default_rng(0)
    inputs = [rng.integers(0, 256, (4, 224, 224, 3), dtype=np.uint8) for _ in range(8)]
    expected = [lite0.predict(x) for x in inputs]
    batcher = Batcher(lite0.predict, max_batch=64)
    results: list[np.ndarray | None] = [None] * 8
    start = threading.Barrier(8)

    def call(i: int) -> None:
        start.wait()
        results[i] = batcher.predict(inputs[i])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    batcher.close()
    for got, want in zip(results, expected, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-4)
    assert batcher.images == 32
    assert batcher.batches < 8  # callers that arrived together ran together


def test_errors_reach_the_caller_and_the_worker_lives_on(lite0) -> None:
    batcher = Batcher(lite0.predict)
    bad = np.zeros((1, 10, 10, 3), np.uint8)
    try:
        batcher.predict(bad)
    except ValueError as exc:
        assert "expected uint8 images" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("a wrong shape must fail")
    out = batcher.predict(np.zeros((2, 224, 224, 3), np.uint8))
    assert out.shape == (2, 1000)
    batcher.close()
