"""The training loop: `train_one_epoch`, `evaluate` and `fit`, which a worker process calls.

Data lives on the run's device as whole uint8 tensors; each batch is sliced from a random
permutation and converted there. Everything reaches the outside through a `Reporter`."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from trainers import data, losses, measures, models
from trainers.checkpoints import EpochPosition, load_checkpoint, save_checkpoint
from trainers.config import ConfigError, RunConfig
from trainers.control import Inbox, StopRequested, source_said
from trainers.distributed import SINGLE, World
from trainers.errors import LivetrainError
from trainers.reporting import (
    EPOCH_TRAIN_ACC, EPOCH_TRAIN_LOSS, GRAD_PREFIX, LR, SAMPLES_PER_S, TEST_ACC, TEST_ENTROPY, TEST_LOSS,
    TEST_OBJECTIVE, TRAIN_ACC, TRAIN_LOSS, Reporter, RunState,
)
from trainers.steering import Steering
from trainers.usermodels import takes_flat_input

# predictions are reported on a fixed sample of test images, the same for every run on a data set,
# so galleries compare side by side and the dashboard can show where the runs disagree
SAMPLE_SIZE = 500
SAMPLE_SEED = 1234
EVAL_BATCH = 1000
MISTAKES = 8  # the most confidently wrong test images reported per epoch
TRAIN_SAMPLES = 16  # training images reported before the first step (the first of the split)
# batches between two samples of the layers' gradient norms (the first batch of a run is one);
# 0: none. Read every batch, so the dashboard benchmark can switch it with its phases
GRADIENT_EVERY = 25


class DeviceError(LivetrainError):
    """The device a run asks for is not on this machine."""


class Diverged(Exception):
    """The loss stopped being a finite number."""


@dataclass
class EvalResult:
    """A pass over a split: mean loss (the one trained on) and cross-entropy, accuracy, and
    per-image predictions."""

    loss: float
    cross_entropy: float
    acc: float
    entropy: float  # mean entropy of the predicted distribution, in bits
    predicted: torch.Tensor  # (N,) class index
    probability: torch.Tensor  # (N,) softmax probability of the predicted class
    confusion: torch.Tensor  # (K, K) counts, rows true class, columns predicted
    image_loss: torch.Tensor  # (N,) each image's cross-entropy (its true class's probability is exp(-it))

    def metrics(self, objective: bool) -> dict[str, float]:
        """The test metrics of this result (with the trained-on loss when it is not cross-entropy)."""
        out = {TEST_LOSS: self.cross_entropy, TEST_ACC: self.acc, TEST_ENTROPY: self.entropy}
        if objective:
            out[TEST_OBJECTIVE] = self.loss
        return out

    def mistakes(self, labels: torch.Tensor, count: int = MISTAKES) -> torch.Tensor:
        """Indices of the `count` wrongly predicted images with the highest loss, highest first."""
        wrong = (self.predicted != labels.cpu()).nonzero().flatten()
        order = self.image_loss[wrong].argsort(descending=True, stable=True)[:count]
        return wrong[order]


@dataclass
class RunResult:
    """How a run ended, with one dict of metrics per finished epoch."""

    status: RunState  # RUNNING while it trains; FINISHED or FAILED once fit returns
    reason: str = ""
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def test_acc(self) -> float | None:
        return self.history[-1][TEST_ACC] if self.history else None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("CUDA is not available here (torch sees no GPU); use --device cpu or auto")
    return torch.device(name)


def accuracy_count(logits: torch.Tensor, labels: torch.Tensor) -> int:
    """How many rows' largest logit is the true class (a count, so averaging stays visible)."""
    return int((logits.argmax(dim=1) == labels).sum())


def train_one_epoch(model: models.Model, optimizer: Any, loss_fn: Any, images: torch.Tensor,
                    labels: torch.Tensor, config: RunConfig, epoch: int, reporter: Reporter,
                    generator: torch.Generator, stats: tuple[torch.Tensor, torch.Tensor] | None,
                    world: World = SINGLE, start: EpochPosition | None = None,
                    steering: Steering | None = None) -> tuple[float, float]:
    """One pass over the training tensors; reports every batch; returns (mean loss, accuracy).
    On several ranks (`world`), each trains on its part of every global batch and the numbers
    reported are the global batch's (see trainers.distributed). `start`: where in the epoch a
    resumed run goes on from. `steering`: what was asked of the run, taken after every batch (a
    stop raises StopRequested, carrying the position reached)."""
    assert config.batch_size is not None and config.lr is not None
    n = labels.shape[0]
    batches_per_epoch = math.ceil(n / config.batch_size)
    distributed = world.size > 1
    model.train()
    start = start or EpochPosition()
    loss_sum, correct, seen = start.loss_sum, start.correct, start.seen
    tick = time.perf_counter()
    total_steps = config.epochs * batches_per_epoch
    weight_layers = models.layers(model)
    part = world.part if distributed else None
    for i, (x, y) in enumerate(data.batches(images, labels, config.batch_size, generator=generator, stats=stats,
                                            part=part, offset=start.seen, augment=config.augment or "none"),
                               start=start.batches):
        step = epoch * batches_per_epoch + i
        if config.schedule != "constant":  # of the lr in force (changed from the page, maybe)
            optimizer.param_groups[0]["lr"] = scheduled_lr(steering.config if steering else config, step, total_steps)
        # forward and backward: logits (B, K), loss a scalar batch mean
        logits = model(x)
        b = y.shape[0]
        if distributed:  # this rank's part of a global batch of `total` (maybe none of it)
            total = min(config.batch_size, n - i * config.batch_size)
            mean = loss_fn(logits, y) if b else None
            loss = mean * world.loss_scale(b, total) if mean is not None else logits.sum() * 0.0
        else:
            loss = mean = loss_fn(logits, y)
        optimizer.zero_grad()
        loss.backward()
        # .item() waits for the device; it is the number we report anyway
        batch_loss = mean.item() if mean is not None else 0.0
        batch_correct = accuracy_count(logits.detach(), y)
        asked = 0.0
        if distributed:  # the global batch's: sums over the ranks, then the mean (and whether rank 0 was asked)
            loss_total, correct_total, asked = world.sums([batch_loss * b, float(batch_correct),
                                                           steering.ask() if steering else 0.0])
            b, batch_loss, batch_correct = total, loss_total / total, int(correct_total)
        if not math.isfinite(batch_loss):
            raise Diverged(f"loss became {batch_loss} at epoch {epoch + 1}, batch {i + 1} "
                           f"(lr {optimizer.param_groups[0]['lr']:g} too high?)")
        every = GRADIENT_EVERY
        norms = gradient_norms(weight_layers) if every and step % every == 0 and world.main else None
        optimizer.step()

        loss_sum += batch_loss * b
        correct += batch_correct
        seen += b
        now = time.perf_counter()
        values = {TRAIN_LOSS: batch_loss, TRAIN_ACC: batch_correct / b,
                  SAMPLES_PER_S: b / max(now - tick, 1e-9), LR: optimizer.param_groups[0]["lr"]}
        if norms is not None:
            values.update(norms)
        # x: epochs as a fraction, so different batch sizes line up
        reporter.scalars(step + 1, epoch + seen / n, values)
        tick = now
        if steering is not None:  # what was asked of the run, between this batch and the next
            try:
                if steering.between(step + 1, epoch + seen / n, EpochPosition(i + 1, loss_sum, correct, seen),
                                    asked > 0):
                    tick = time.perf_counter()  # a pause is no batch's time
            except StopRequested as stop:
                stop.position = EpochPosition(i + 1, loss_sum, correct, seen)
                raise
    return loss_sum / seen, correct / seen


@torch.no_grad()
def gradient_norms(weight_layers: list[tuple[str, list[torch.Tensor]]]) -> dict[str, float]:
    """Each layer's gradient norm (the L2 norm of all its parameters' gradients), as metrics;
    one device sync for all of them."""
    names, norms = [], []
    for name, params in weight_layers:
        grads = [torch.linalg.vector_norm(p.grad) for p in params if p.grad is not None]
        if grads:
            names.append(GRAD_PREFIX + name)
            norms.append(torch.linalg.vector_norm(torch.stack(grads)))
    return dict(zip(names, torch.stack(norms).tolist())) if norms else {}


@torch.no_grad()
def evaluate(model: models.Model, objective: Any, images: torch.Tensor, labels: torch.Tensor,
             num_classes: int, stats: tuple[torch.Tensor, torch.Tensor] | None, world: World = SINGLE) -> EvalResult:
    """Loss, accuracy, predictions and confusion matrix over a whole split. The loss is always
    cross-entropy; `objective`, a run's other loss, is computed too (None: it trains on
    cross-entropy, so its loss is that). On several ranks each evaluates its contiguous part of
    the split, every image once, and all get the whole result (sums, and the parts gathered);
    `model` is then the bare module, not its DistributedDataParallel wrapper (whose forward
    would be a collective, and the parts may differ by a batch)."""
    model.eval()
    n = labels.shape[0]
    mine = world.part(n)
    images, labels_mine = images[mine], labels[mine]
    loss_sum, ce_sum, entropy_sum, predicted, probability, image_loss = 0.0, 0.0, 0.0, [], [], []
    for x, y in data.batches(images, labels_mine, EVAL_BATCH, stats=stats):
        logits = model(x)
        if objective is not None:
            loss_sum += float(objective(logits, y)) * y.shape[0]
        log_p = torch.log_softmax(logits.float(), dim=1)
        entropy_sum += float(losses.entropy_bits(log_p).sum())
        each = -log_p.gather(1, y[:, None]).squeeze(1)  # each image's cross-entropy
        ce_sum += float(each.sum())
        image_loss.append(each)
        prob, pred = log_p.exp().max(dim=1)
        predicted.append(pred)
        probability.append(prob)
    empty = labels.new_zeros(0)
    pred = world.gather(torch.cat(predicted) if predicted else empty, n)
    prob = world.gather(torch.cat(probability) if probability else empty.float(), n)
    each_loss = world.gather(torch.cat(image_loss) if image_loss else empty.float(), n)
    ce_sum, loss_sum, entropy_sum = world.sums([ce_sum, loss_sum, entropy_sum])
    confusion = torch.bincount(labels * num_classes + pred, minlength=num_classes**2)
    cross_entropy = ce_sum / n
    return EvalResult(cross_entropy if objective is None else loss_sum / n, cross_entropy,
                      float((pred == labels).sum()) / n, entropy_sum / n, pred.cpu(),
                      prob.cpu(), confusion.reshape(num_classes, num_classes).cpu(), each_loss.cpu())


def scheduled_lr(config: RunConfig, step: int, total_steps: int) -> float:
    """The lr at `step` (0-based) of `total_steps`: constant; cosine, half a cosine from the lr
    down to 0 over the run; step, a tenth of it from half the run and a hundredth from three
    quarters (set per batch, so runs of any length and batch size decay alike)."""
    assert config.lr is not None
    if config.schedule == "cosine":
        return config.lr * 0.5 * (1 + math.cos(math.pi * step / total_steps))
    if config.schedule == "step":
        return config.lr * 0.1 ** ((2 * step >= total_steps) + (4 * step >= 3 * total_steps))
    return config.lr


def make_optimizer(model: models.Model, config: RunConfig) -> Any:
    """The run's optimizer; the from-scratch model's is hand-written SGD (trainers.scratch)."""
    assert config.lr is not None
    decay = config.weight_decay or 0.0
    if isinstance(model, models.SoftmaxRegression):
        from trainers.scratch import SGD

        return SGD(model.parameters(), lr=config.lr, momentum=config.momentum or 0.0, weight_decay=decay)
    if config.optimizer in ("adam", "adamw"):  # fused: one kernel a step (the MLP's step 1.14x, benchmarks.md)
        adam = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
        return adam(model.parameters(), lr=config.lr, weight_decay=decay, fused=True)
    if config.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum or 0.0, weight_decay=decay)
    raise ConfigError(f"unknown optimizer {config.optimizer!r}; choose one of sgd, adam, adamw")


def fit(config: RunConfig, reporter: Reporter, run_dir: Path | None = None, resume: bool = False,
        dataset: data.Dataset | None = None, world: World = SINGLE, inbox: Inbox | None = None) -> RunResult:
    """Train `config` to its last epoch, reporting as it goes; checkpoint after every epoch.

    A loss that turns NaN or infinite ends the run as FAILED with the reason reported. On several
    ranks (`world`, torch.distributed already initialised) every rank calls this: the model is
    wrapped in DistributedDataParallel, and only rank 0 reports and writes checkpoints (the bare
    model's, as a one-process run writes them). `inbox`: where the requests made to the run come
    from (trainers.control); a stop ends it INTERRUPTED, with a checkpoint of the point reached."""
    config = config.resolved()
    assert config.batch_size is not None
    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    if world.size > 1 and device.type == "cuda":  # one GPU per rank of this machine
        device = torch.device("cuda", world.local)
        torch.cuda.set_device(device)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)  # batch order, on the CPU

    # ---- data: whole splits on the device, as uint8 ----
    ds = dataset or data.load(config.dataset, config.data_dir)
    train_x, train_y = ds.train.images, ds.train.labels
    if config.limit:
        train_x, train_y = train_x[: config.limit], train_y[: config.limit]
    train_x, train_y = train_x.to(device), train_y.to(device)
    test_x, test_y = ds.test.images.to(device), ds.test.labels.to(device)
    spec = models.spec(config.model)
    stats = tuple(t.to(device) for t in data.pixel_stats(ds.train)) if spec.normalize else None
    sample = torch.randperm(len(ds.test), generator=torch.Generator().manual_seed(SAMPLE_SEED))[:SAMPLE_SIZE]

    # ---- model and optimizer, maybe from the last checkpoint ----
    model = models.build(config.model, ds.image_shape, len(ds.classes), config.model_settings()).to(device)
    loss_fn = losses.get(config.loss, by_hand=spec.scratch, smoothing=config.label_smoothing or 0.0)
    optimizer = make_optimizer(model, config)
    trained = model  # what trains: the model, or its DistributedDataParallel wrapper
    if world.size > 1:
        if not isinstance(model, torch.nn.Module):
            raise ConfigError(f"{config.model} is written without torch.nn and trains on one process only; "
                              "use softmax-nn for a softmax on several")
        if any(isinstance(p, torch.nn.parameter.UninitializedParameter) for p in model.parameters()):
            with torch.no_grad():  # lazy layers (a user's model) take their shapes before DDP wraps them
                model.eval()
                model(torch.zeros((1, *ds.image_shape), device=device))
        trained = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if not world.main:
        reporter = Silent()
    result = RunResult(RunState.RUNNING)

    def ended(state: RunState, reason: str = "") -> RunResult:
        result.status, result.reason = state, reason
        reporter.status(state, reason)
        return result
    steering = Steering(inbox, reporter, optimizer, config, world)  # on several ranks: rank 0 reads the inbox
    start_epoch, position = 0, None
    if resume:
        resumed = load_checkpoint(run_dir, config, model, optimizer, generator)
        start_epoch, result.history, position = resumed.epochs_done, resumed.history, resumed.position
        steering.resumed_with(resumed.lr)
    logged = config.to_dict()
    if takes_flat_input(model):  # a user's model that takes (B, C*H*W): said in the runs table
        logged["input"] = f"flat (B, {math.prod(ds.image_shape)})"
    reporter.config(logged)
    reporter.status(RunState.RUNNING)

    def tested(result: EvalResult) -> measures.Evaluation:
        return measures.Evaluation(result, ds.test.images, ds.test.labels, ds.classes, model, sample)

    reporter.record(measures.GALLERY, 0, float(start_epoch), measures.gallery(tested(None)))  # each start (a fork too)
    objective = None if config.loss == "ce" and not config.label_smoothing else loss_fn  # test it on its own
    if start_epoch == 0 and position is None:
        # what the page shows before the first epoch ends: training images, and the untrained
        # model's test results at x = 0 (near chance), where the per-epoch curves start
        reporter.record(measures.SAMPLES, 0, 0.0,
                        measures.samples(ds.train.images[:TRAIN_SAMPLES], ds.train.labels[:TRAIN_SAMPLES], ds.classes))
        untrained = evaluate(model, objective, test_x, test_y, len(ds.classes), stats, world)
        if not math.isfinite(untrained.cross_entropy):
            reason = (f"the untrained model's test loss is {untrained.cross_entropy}: its outputs are not numbers "
                      "(check its initialisation)")
            return ended(RunState.FAILED, reason)
        found = measures.measure(tested(untrained), trained=False)
        reporter.scalars(0, 0.0, {**untrained.metrics(objective is not None), **measures.scalars(found)})
        measures.report(reporter, 0, 0.0, found)

    for epoch in range(start_epoch, config.epochs):
        # the batch order's generator as the epoch begins: a checkpoint inside the epoch keeps it
        epoch_generator = generator.get_state()
        if run_dir is not None and world.main:  # a fork's checkpoint, at a point inside this epoch
            steering.save = fork_saver(run_dir, epoch, steering, model, optimizer, epoch_generator, result.history)
        try:
            train_loss, train_acc = train_one_epoch(trained, optimizer, loss_fn, train_x, train_y, config,
                                                    epoch, reporter, generator, stats, world, position, steering)
        except Diverged as exc:
            return ended(RunState.FAILED, str(exc))
        except StopRequested as stop:
            x = epoch + stop.position.seen / train_y.shape[0]
            kept = ""
            if run_dir is not None and world.main:
                save_checkpoint(run_dir, epoch, steering.config, model, optimizer, epoch_generator,
                                result.history, stop.position, x)
                kept = f"; its checkpoint at epoch {x:.2f} is kept"
            return ended(RunState.INTERRUPTED, source_said(stop.request) + kept)
        position = None
        test = evaluate(model, objective, test_x, test_y, len(ds.classes), stats, world)
        if not math.isfinite(test.cross_entropy):  # the last step of the epoch broke the weights
            reason = (f"test loss became {test.cross_entropy} after epoch {epoch + 1}: the weights are no longer "
                      f"numbers (lr {optimizer.param_groups[0]['lr']:g} too high?)")
            return ended(RunState.FAILED, reason)
        found = measures.measure(tested(test))
        metrics = {EPOCH_TRAIN_LOSS: train_loss, EPOCH_TRAIN_ACC: train_acc, **test.metrics(objective is not None),
                   **measures.scalars(found)}
        result.history.append(metrics)
        x = float(epoch + 1)
        steps = (epoch + 1) * math.ceil(train_y.shape[0] / config.batch_size)
        reporter.scalars(steps, x, metrics)
        measures.report(reporter, steps, x, found)
        if run_dir is not None and world.main:
            save_checkpoint(run_dir, epoch + 1, steering.config, model, optimizer, generator.get_state(),
                            result.history)

    return ended(RunState.FINISHED)


def fork_saver(run_dir: Path, epoch: int, steering: Steering, model: models.Model, optimizer: Any,
               epoch_generator: torch.Tensor, history: list[dict[str, float]]) -> Any:
    """What writes a fork's checkpoint during `epoch`: into a folder beside `run_dir`, at the
    position reached (the batch order's generator as the epoch began, see save_checkpoint)."""
    def save(into: str, position: EpochPosition, x: float) -> None:
        save_checkpoint(run_dir.parent / into, epoch, steering.config, model, optimizer, epoch_generator,
                        list(history), position, x, fork=True)

    return save


class Silent:
    """The reporter of a rank other than 0: rank 0 alone reports the run."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None
