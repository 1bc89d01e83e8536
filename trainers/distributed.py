"""One run on several processes (ranks) with torch.distributed: which part of each batch and of
the test set a rank takes, and the sums that make the run's numbers.

Every rank draws the same permutation of the training set (the run's generator, seeded alike)
and takes its contiguous part of each global batch, so the global batch is the one a
one-process run at that batch size would train on. Each rank's loss is scaled so that
DistributedDataParallel's mean of the ranks' gradients is the gradient of the global batch's
mean loss, whatever the parts' sizes (the last batch of an epoch rarely divides evenly). The
test set is split into contiguous parts, each image evaluated once (no sampler padding, which
would count some twice). Metrics are reduced as sums (loss x count, correct, count), never as
means of the ranks' means; rank 0 alone reports them. With one process (`SINGLE`) nothing here
calls torch.distributed, and every number is what it always was."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class World:
    """This process's rank among `size` ranks of one run (`local`: its rank on its machine, the
    GPU it trains on)."""

    rank: int = 0
    size: int = 1
    local: int = 0

    @property
    def main(self) -> bool:
        """The rank that reports (writes the run log, draws the windows, saves checkpoints)."""
        return self.rank == 0

    def part(self, n: int) -> slice:
        """This rank's contiguous part of n items: parts differ in size by at most one."""
        return slice(self.rank * n // self.size, (self.rank + 1) * n // self.size)

    def sums(self, values: list[float]) -> list[float]:
        """The sums over the ranks of `values` (float64), the same on every rank."""
        if self.size == 1:
            return values
        total = torch.tensor(values, dtype=torch.float64)
        torch.distributed.all_reduce(total)
        return total.tolist()

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum `tensor` over the ranks in place (a collective: every rank calls it)."""
        if self.size > 1:
            torch.distributed.all_reduce(tensor)
        return tensor

    def gather(self, part: torch.Tensor, n: int) -> torch.Tensor:
        """The whole (n, ...) tensor from each rank's `part` of it (see `part`), on every rank."""
        if self.size == 1:
            return part
        whole = torch.zeros((n, *part.shape[1:]), dtype=part.dtype, device=part.device)
        whole[self.part(n)] = part
        return self.sum_(whole)

    def share(self, item: Any) -> Any:
        """Rank 0's `item` (JSON, or None) on every rank (the others pass anything): two broadcasts
        of CPU tensors, by the backend of the per-batch sums; one when it is None."""
        if self.size == 1:
            return item
        payload = json.dumps(item).encode() if self.main and item is not None else b""
        size = torch.tensor([len(payload)], dtype=torch.int64)
        torch.distributed.broadcast(size, 0)
        if not size.item():
            return None
        data = torch.frombuffer(bytearray(payload), dtype=torch.uint8) if self.main else \
            torch.empty(int(size.item()), dtype=torch.uint8)
        torch.distributed.broadcast(data, 0)
        return json.loads(data.numpy().tobytes())

    def loss_scale(self, local: int, total: int) -> float:
        """The factor on a rank's mean loss over its `local` of a batch's `total` images that makes
        the ranks' mean gradient the gradient of the batch's mean loss."""
        return 1.0 if self.size == 1 else self.size * local / total


SINGLE = World()

# The process group's backends, by the device a run trains on. On CUDA, nccl carries the
# gradients and the gathered predictions (GPU tensors), and gloo the per-batch sums, which are
# CPU tensors: a group of nccl alone has no backend for them ("No backend type associated with
# device type cpu"), and every multi-GPU run would fail at its first batch.
BACKENDS = {"cpu": "gloo", "cuda": "cpu:gloo,cuda:nccl"}


def backend(device_type: str) -> str:
    """The torch.distributed backend string for a run on `device_type` ("cpu" or "cuda")."""
    return BACKENDS[device_type]
