"""One run on two processes with torch.distributed (gloo, on this CPU), started by torch's own
elastic launcher: the same numbers as one process at the same global batch, every test image
counted once, rank 0 alone reporting."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.conftest import free_port
from tests.ddp_ranks import train
from trainers import data
from trainers.config import RunConfig
from trainers.distributed import World
from trainers.loop import fit
from trainers.reporting import EPOCH_TRAIN_LOSS, TEST_ACC, Recorder

pytestmark = pytest.mark.slow


def on_ranks(config: RunConfig, ranks: int = 2) -> dict[int, dict]:
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    launch = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=ranks, rdzv_backend="c10d",
                          rdzv_endpoint=f"127.0.0.1:{free_port()}", max_restarts=0, monitor_interval=0.1,
                          start_method="spawn", run_id="test")
    return elastic_launch(launch, train)(config.to_dict())


def test_parts_cover_every_item_once() -> None:
    for n in (0, 1, 7, 10_000, 10_001):
        for size in (1, 2, 3):
            parts = [World(r, size).part(n) for r in range(size)]
            covered = [i for p in parts for i in range(n)[p]]
            assert covered == list(range(n)) and max(len(range(n)[p]) for p in parts) - min(
                len(range(n)[p]) for p in parts) <= 1
    assert World(1, 2).loss_scale(53, 105) == pytest.approx(2 * 53 / 105) and World().loss_scale(5, 9) == 1.0


def test_two_ranks_train_as_one_process_at_the_same_global_batch() -> None:
    """An MLP without dropout, global batch 128 over 1,001 images (the last batch, 105, splits
    52 / 53): per-epoch train losses within 1e-4 of one process's, the same test accuracy, every
    one of the 10,000 test images counted once, and one rank's report."""
    config = RunConfig("mlp", epochs=2, limit=1001, batch_size=128, dropout=0.0, seed=5, threads=1, device="cpu")
    single = fit(config, Recorder(), dataset=data.load("fashion-mnist"))
    ranks = on_ranks(config)
    main = ranks[0]
    assert ranks[1]["rows"] == 0  # rank 1 reported nothing
    assert [h[EPOCH_TRAIN_LOSS] for h in main["history"]] == pytest.approx(
        [h[EPOCH_TRAIN_LOSS] for h in single.history], abs=1e-4)
    assert [h[TEST_ACC] for h in main["history"]] == pytest.approx([h[TEST_ACC] for h in single.history], abs=2e-4)
    assert main["confusion"] == [10_000, 10_000]  # each test image once, no sampler padding
    assert len(main["train_loss"]) == 2 * 8  # global batches, not a rank's


def test_the_scratch_softmax_says_it_trains_on_one_process() -> None:
    with pytest.raises(Exception, match="one process only"):
        on_ranks(replace(RunConfig("softmax", epochs=1, limit=256, threads=1, device="cpu")))
