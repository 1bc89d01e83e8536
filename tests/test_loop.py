"""The training loop on real Fashion-MNIST and on generated data: what it reports, determinism,
divergence, checkpoints and resume, devices, threads, and d2l's table reproduced."""

from __future__ import annotations

import math
import re
from pathlib import Path
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO
from tests.helpers import make_cifar
from dashboard.runlog import decode_images
from trainers import data, losses, models
from trainers.config import ConfigError, RunConfig
from trainers.checkpoints import CHECKPOINT, ResumeError
from trainers.loop import (
    GRADIENT_EVERY, MISTAKES, SAMPLE_SIZE, TRAIN_SAMPLES, DeviceError, evaluate, fit, gradient_norms,
)
from trainers.reporting import (
    EPOCH_TRAIN_LOSS, GRAD_PREFIX, LR, SAMPLES_PER_S, TEST_ACC, TEST_ECE, TEST_ENTROPY, TEST_LOSS, TEST_WEAKEST,
    TRAIN_ACC, TRAIN_LOSS, Recorder,
)

D2L_TRAIN_LOSS = [0.787, 0.570, 0.525, 0.501, 0.485]
D2L_TEST_ACC = [0.794, 0.809, 0.814, 0.822, 0.828]


@pytest.fixture(scope="module")
def fashion() -> data.Dataset:
    return data.load("fashion-mnist")


def test_softmax_from_scratch_reproduces_d2l_table(fashion: data.Dataset) -> None:
    rec = Recorder()
    result = fit(RunConfig("softmax", epochs=5, lr=0.1, batch_size=256), rec, dataset=fashion)
    assert result.status == "finished"
    losses = [h[EPOCH_TRAIN_LOSS] for h in result.history]
    accs = [h[TEST_ACC] for h in result.history]
    for epoch, (ours, theirs) in enumerate(zip(losses, D2L_TRAIN_LOSS), 1):
        assert abs(ours - theirs) <= 0.02, f"epoch {epoch}: train loss {ours:.3f} vs d2l {theirs}"
    for epoch, (ours, theirs) in enumerate(zip(accs, D2L_TEST_ACC), 1):
        assert abs(ours - theirs) <= 0.03, f"epoch {epoch}: test acc {ours:.3f} vs d2l {theirs}"


def test_reports_every_batch_and_every_epoch(fashion: data.Dataset) -> None:
    rec = Recorder()
    fit(RunConfig("mlp", epochs=2, batch_size=100, limit=1000), rec, dataset=fashion)
    batch_rows = [(step, x) for step, x, v in rec.rows if TRAIN_LOSS in v]
    assert [s for s, _ in batch_rows] == list(range(1, 21))
    # x is epochs as a fraction: samples seen / training-set size
    assert [x for _, x in batch_rows][:3] == pytest.approx([0.1, 0.2, 0.3])
    assert batch_rows[-1][1] == pytest.approx(2.0)
    assert all(v > 0 for v in rec.series(SAMPLES_PER_S))
    assert all(0 <= v <= 1 for v in rec.series(TRAIN_ACC))
    lrs = rec.series(LR)
    assert lrs[0] == pytest.approx(1e-3) and lrs[-1] < lrs[0] / 10  # cosine, down towards 0
    assert len(rec.series(TEST_ACC)) == 3  # the untrained model's, then each epoch's
    (gallery,) = rec.of("gallery")  # once, as the run starts
    assert decode_images(gallery).shape == (SAMPLE_SIZE, 1, 28, 28) and gallery["classes"][0] == "T-shirt/top"
    shown = rec.of("predictions")[-1]
    assert len(shown["predicted"]) == len(shown["true"]) == len(shown["probability"]) == SAMPLE_SIZE
    assert all(0.1 < p <= 1 for p in shown["probability"])
    confusion = rec.of("confusion")[-1]
    matrix = torch.tensor(confusion["matrix"])
    assert confusion["x"] == 2.0 and matrix.shape == (10, 10) and int(matrix.sum()) == 10_000
    assert matrix.sum(dim=1).tolist() == [1000] * 10  # rows are the true classes
    assert rec.states == [("running", ""), ("finished", "")]
    assert rec.config_values["label"] == "mlp" and rec.config_values["lr"] == 1e-3


def test_same_seed_same_numbers_on_cpu(fashion: data.Dataset) -> None:
    def losses(seed: int) -> list[float]:
        rec = Recorder()
        fit(RunConfig("cnn", epochs=1, limit=512, seed=seed, device="cpu"), rec, dataset=fashion)
        return rec.series(TRAIN_LOSS) + rec.series(TEST_ACC)

    first = losses(3)
    assert losses(3) == first
    assert losses(4) != first


def test_divergence_is_a_failed_run_not_a_crash(fashion: data.Dataset) -> None:
    rec = Recorder()
    result = fit(RunConfig("mlp", epochs=3, optimizer="sgd", lr=1e6, limit=2000), rec, dataset=fashion)
    assert result.status == "failed"
    assert result.reason.startswith("loss became") and "at epoch 1, batch" in result.reason
    assert re.search(r"\(lr 9\d{5} too high\?\)$", result.reason)  # the lr in force (cosine, ~1e6)
    assert rec.states[-1] == ("failed", result.reason)


POISONED = """
import math
from torch import nn


class Poisoned(nn.Module):
    \"\"\"A linear model whose weights turn NaN just before evaluation number EVALS: the last training
    batch's loss was finite, but the model is no longer numbers (as a last step that blew up).\"\"\"

    EVALS = {evals}

    def __init__(self, num_inputs, num_classes):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(num_inputs, num_classes))
        self.evals = 0

    def train(self, mode=True):
        if not mode:  # model.eval()
            self.evals += 1
            if self.evals == self.EVALS:
                self.net[1].weight.data.fill_(math.nan)
        return super().train(mode)

    def forward(self, x):
        return self.net(x)
"""


@pytest.mark.parametrize("evals, reason", [
    (3, "test loss became nan after epoch 1: the weights are no longer numbers (lr 0.001 too high?)"),
    (2, "the untrained model's test loss is nan: its outputs are not numbers (check its initialisation)"),
])
def test_a_model_broken_by_its_last_step_fails_with_that_reason(tmp_path: Path, fashion: data.Dataset, evals: int,
                                                                 reason: str) -> None:
    """Not a JSON error from its NaN probabilities, and no entropy of 0 bits: the run log (which
    refuses NaN) gets the divergence as the reason. (Evaluation 1 is the model check at build.)"""
    from dashboard.adapter import Dashboard
    from dashboard.runlog import read

    (tmp_path / "poisoned.py").write_text(POISONED.format(evals=evals))
    dash = Dashboard(tmp_path / "run", "poisoned")
    config = RunConfig(f"{tmp_path / 'poisoned.py'}:Poisoned", epochs=2, limit=256, batch_size=128,
                       schedule="constant")
    result = fit(config, dash, tmp_path / "run", dataset=fashion)
    dash.close()
    assert (result.status, result.reason) == ("failed", reason)
    record = read(tmp_path / "run")
    assert record.status == "failed" and record.states[-1]["reason"] == reason
    assert not record.predictions and all(v is None or math.isfinite(v) for row in record.scalars
                                          for k, v in row.items() if k not in ("kind",))
    assert math.isnan(float(losses.entropy_bits(torch.full((1, 10), math.nan))[0]))


class InterruptAfter(Recorder):
    """Raises KeyboardInterrupt (as Ctrl-C would) when step `limit` + 1 is reported."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def scalars(self, step: int, x: float, values: dict) -> None:
        if step > self.limit and TRAIN_LOSS in values:
            raise KeyboardInterrupt
        super().scalars(step, x, values)


def test_checkpoint_is_weights_only_and_resume_continues_exactly(tmp_path, fashion: data.Dataset) -> None:
    config = RunConfig("mlp", epochs=2, limit=1000, seed=7)
    straight = fit(config, Recorder(), run_dir=tmp_path / "a", dataset=fashion)

    with pytest.raises(KeyboardInterrupt):  # stopped in the middle of epoch 2
        fit(config, InterruptAfter(8 + 3), run_dir=tmp_path / "b", dataset=fashion)
    state = torch.load(tmp_path / "b" / CHECKPOINT, weights_only=True)
    assert state["epochs_done"] == 1 and state["config"]["model"] == "mlp"
    rec = Recorder()
    resumed = fit(config, rec, run_dir=tmp_path / "b", resume=True, dataset=fashion)
    assert len(rec.series(TRAIN_LOSS)) == 8  # only the second epoch was trained again
    assert resumed.history == straight.history
    final_a = torch.load(tmp_path / "a" / CHECKPOINT, weights_only=True)["model"]
    final_b = torch.load(tmp_path / "b" / CHECKPOINT, weights_only=True)["model"]
    for name in final_a:
        torch.testing.assert_close(final_a[name], final_b[name], rtol=0, atol=0)
    assert not list((tmp_path / "b").glob("*.tmp"))


def test_resume_refuses_a_missing_or_foreign_checkpoint(tmp_path, fashion: data.Dataset) -> None:
    with pytest.raises(ResumeError, match="cannot resume: no checkpoint at") as info:
        fit(RunConfig("mlp", epochs=1, limit=100), Recorder(), run_dir=tmp_path, resume=True, dataset=fashion)
    assert info.value.exit_code == 1  # the files say no, not the command line
    fit(RunConfig("softmax", epochs=1, limit=100), Recorder(), run_dir=tmp_path, dataset=fashion)
    with pytest.raises(ResumeError, match="is a softmax on fashion-mnist, not a mlp on fashion-mnist"):
        fit(RunConfig("mlp", epochs=2, limit=100), Recorder(), run_dir=tmp_path, resume=True, dataset=fashion)


def test_cnn_trains_on_cifar10_shaped_data(tmp_path) -> None:
    make_cifar(tmp_path / "cifar-10-batches-py", per_batch=20)
    rec = Recorder()
    result = fit(RunConfig("cnn", dataset="cifar10", epochs=1, data_dir=str(tmp_path)), rec)
    assert result.status == "finished" and rec.of("gallery")[0]["shape"][1:] == [3, 32, 32]


def test_threads_are_set_per_run(fashion: data.Dataset) -> None:
    before = torch.get_num_threads()
    try:
        fit(RunConfig("softmax", epochs=1, limit=256, threads=1), Recorder(), dataset=fashion)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("changes, message", [
    (dict(model="resnet"), "unknown model 'resnet'; choose one of softmax, softmax-nn, mlp, cnn, lenet"),
    (dict(dataset="svhn"), "unknown data set 'svhn'"),
    (dict(epochs=0), "epochs must be from 1 to 10,000, not 0"),
    (dict(epochs=10**20), "epochs must be from 1 to 10,000"),
    (dict(batch_size=-5), "batch size must be at least 1, not -5"),
    (dict(lr=-0.1), "learning rate must be a positive number, not -0.1"),
    (dict(lr=float("nan")), "learning rate must be a positive number, not nan"),
    (dict(lr=float("inf")), "learning rate must be a positive number, not inf"),
    (dict(model="softmax", optimizer="adam"), "softmax regression trains with its hand-written SGD"),
    (dict(device="tpu"), "unknown device 'tpu'"),
])
def test_bad_configs_are_refused_before_any_data_loads(changes: dict, message: str) -> None:
    values = dict(model="mlp") | changes
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        RunConfig(**values).resolved()
    assert info.value.exit_code == 2  # a usage error: the settings asked for it


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_on_a_cpu_machine_says_what_to_do(fashion: data.Dataset) -> None:
    with pytest.raises(DeviceError, match="CUDA is not available here .*; use --device cpu or auto") as info:
        fit(RunConfig("mlp", epochs=1, device="cuda"), Recorder(), dataset=fashion)
    assert info.value.exit_code == 1  # the machine says no


def test_trainers_never_import_visdom() -> None:
    code = ("import sys, trainers.loop, trainers.models, trainers.data, trainers.scratch; "
            "assert not [m for m in sys.modules if m.startswith(('visdom', 'dashboard'))]")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def test_parallel_runs_share_the_cores() -> None:
    from trainers.config import threads_per_run

    assert threads_per_run(3, cores=2) == 1
    assert threads_per_run(2, cores=16) == 8
    assert threads_per_run(1, cores=2) == 2


@pytest.mark.parametrize("probabilities, bits", [([0.25] * 4, 2.0), ([0.1, 0.1, 0.1, 0.7], 1.3568),
                                                 ([0.001, 0.001, 0.001, 0.997], 0.0342), ([0.0, 1.0, 0.0, 0.0], 0.0)])
def test_entropy_in_bits_matches_seed_001(probabilities: list[float], bits: float) -> None:
    log_p = torch.tensor([probabilities]).log()
    assert losses.entropy_bits(log_p).item() == pytest.approx(bits, abs=5e-5)


def test_untrained_point_at_x0_entropy_mistakes_and_samples(fashion: data.Dataset) -> None:
    """Before the first step: the training samples and the untrained model's test metrics at
    x = 0 (step 0), near chance. Per epoch: the mean entropy (as torch's Categorical gives it,
    in bits) and the most confidently wrong test images, highest loss first."""
    rec = Recorder()
    result = fit(RunConfig("mlp", epochs=2, limit=2000, seed=3), rec, dataset=fashion)
    (first_step, first_x, first), *_ = rec.rows
    assert (first_step, first_x) == (0, 0.0) and set(first) == {TEST_LOSS, TEST_ACC, TEST_ENTROPY, TEST_WEAKEST, TEST_ECE}
    # the weakest class and the ECE, as the records their windows draw from say them
    for (_, x, row), accs, bins in zip([r for r in rec.rows if TEST_ACC in r[2]], rec.of("class_accuracy"),
                                       rec.of("calibration")):
        assert accs["x"] == bins["x"] == x
        assert row[TEST_WEAKEST] == min(a for a in accs["acc"] if a is not None) and row[TEST_ECE] == bins["ece"]
    assert first[TEST_ACC] < 0.3 and first[TEST_ENTROPY] > 1.5  # an untrained guess (chance: 0.1, 3.32 bits)
    assert [x for _, x, v in rec.rows if TEST_ACC in v] == [0.0, 1.0, 2.0]
    assert len(result.history) == 2  # the untrained point is not an epoch
    entropy = rec.series(TEST_ENTROPY)
    assert entropy[-1] < entropy[0]  # surer as it learns

    (samples,) = rec.of("samples")
    images, labels = decode_images(samples), samples["labels"]
    assert images.shape == (TRAIN_SAMPLES, 1, 28, 28) and samples["step"] == samples["x"] == 0
    assert torch.equal(images, fashion.train.images[:TRAIN_SAMPLES]) and labels == fashion.train.labels[:TRAIN_SAMPLES].tolist()

    # the last epoch's numbers, recomputed by hand from a model trained the same way
    logged = rec.of("mistakes")
    worst = logged[-1]
    assert [m["x"] for m in logged] == [1.0, 2.0] and decode_images(worst).shape == (MISTAKES, 1, 28, 28)
    assert all(p != t for p, t in zip(worst["predicted"], worst["true"]))
    assert worst["true_probability"] == sorted(worst["true_probability"])  # highest loss first
    assert all(p > t for p, t in zip(worst["probability"], worst["true_probability"]))


def test_evaluate_entropy_and_mistakes_against_torch(fashion: data.Dataset) -> None:
    torch.manual_seed(0)
    model = models.build("mlp", fashion.image_shape, len(fashion.classes))
    images, labels = fashion.test.images[:3000], fashion.test.labels[:3000]
    stats = data.pixel_stats(fashion.train)
    result = evaluate(model, None, images, labels, 10, stats)
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(x) for x, _ in data.batches(images, labels, 1000, stats=stats)])
    expected = torch.distributions.Categorical(logits=logits).entropy().mean() / math.log(2)
    assert result.entropy == pytest.approx(float(expected), rel=1e-5)
    per_image = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    torch.testing.assert_close(result.image_loss, per_image, rtol=1e-5, atol=1e-5)
    assert result.cross_entropy == pytest.approx(float(per_image.mean()), rel=1e-5)
    wrong = result.mistakes(labels, 5)
    assert (result.predicted[wrong] != labels[wrong]).all()
    worst_wrong = per_image.masked_fill(logits.argmax(1) == labels, -1).topk(5).indices
    assert sorted(wrong.tolist()) == sorted(worst_wrong.tolist())


def test_gradient_norms_per_layer_every_few_batches(fashion: data.Dataset) -> None:
    model = models.build("cnn", fashion.image_shape, 10)
    assert [name for name, _ in models.layers(model)] == ["conv2d1", "conv2d2", "linear1", "linear2"]
    assert [name for name, _ in models.layers(models.build("softmax", fashion.image_shape, 10))] == ["linear1"]
    rec = Recorder()
    fit(RunConfig("mlp", epochs=1, limit=128 * 60, seed=1), rec, dataset=fashion)
    sampled = [(step, v) for step, _, v in rec.rows if GRAD_PREFIX + "linear1" in v]
    assert [step for step, _ in sampled] == [1, 1 + GRADIENT_EVERY, 1 + 2 * GRADIENT_EVERY]
    assert all(set(k for k in v if k.startswith(GRAD_PREFIX)) == {f"{GRAD_PREFIX}linear{i}" for i in (1, 2, 3)}
               for _, v in sampled)
    # the norm is over the layer's weight and bias together
    torch.manual_seed(0)
    layer = torch.nn.Linear(4, 3)
    layer(torch.randn(5, 4)).square().sum().backward()
    norms = gradient_norms(models.layers(torch.nn.Sequential(layer)))
    both = torch.cat([layer.weight.grad.flatten(), layer.bias.grad])
    assert norms == {GRAD_PREFIX + "linear1": pytest.approx(float(both.norm()))}


def test_a_sigmoid_mlps_first_layer_gradient_is_far_below_a_relus(fashion: data.Dataset) -> None:
    """Seed 001's vanishing gradients: after an epoch, the first layer of a sigmoid MLP gets a
    gradient several times smaller than a ReLU MLP's (same data, seed and init)."""
    first = {}
    for activation in ("relu", "sigmoid"):
        rec = Recorder()
        fit(RunConfig("mlp", epochs=1, limit=6000, seed=0, activation=activation), rec, dataset=fashion)
        first[activation] = rec.series(GRAD_PREFIX + "linear1")[-1]
    assert first["sigmoid"] < first["relu"] / 3, first


def test_an_unknown_optimizer_is_refused_not_taken_for_sgd() -> None:
    from dataclasses import replace

    from trainers.config import ConfigError
    from trainers.loop import make_optimizer

    config = replace(RunConfig("mlp").resolved(), optimizer="rmsprop")  # past the config's own check
    with pytest.raises(ConfigError, match="unknown optimizer 'rmsprop'; choose one of sgd, adam, adamw"):
        make_optimizer(models.build("mlp", (1, 28, 28), 10, {}), config)
