"""A person's own model, as they wrote it: built the way its signature allows, given images or flat
input as it takes them. The course notes' own model classes are the test cases, written as the
seeds write them (seed 001's MLP on flat 784-pixel rows, seed 004's CIFAR-10 Net)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers import SEED_001, SEED_004
from trainers import data, models
from trainers.config import RunConfig
from trainers.loop import fit
from trainers.usermodels import ModelFileError, check_user_model, takes_flat_input
from trainers.reporting import Recorder, RunState

# what a tutorial's models look like otherwise: keywords livetrain fills, and a function
OTHERS = """
from torch import nn


class Wide(nn.Module):
    def __init__(self, in_channels, num_classes, width=32):
        super().__init__()
        self.args = (in_channels, num_classes, width)
        self.net = nn.Sequential(nn.Conv2d(in_channels, width, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                 nn.Linear(width, num_classes))

    def forward(self, x):
        return self.net(x)


class Linear(nn.Module):
    def __init__(self, num_inputs, num_classes, image_shape):
        super().__init__()
        self.args = (num_inputs, num_classes, image_shape)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(num_inputs, num_classes))

    def forward(self, x):
        return self.net(x)


def make_net(num_classes=10):
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))
"""


@pytest.fixture()
def files(tmp_path: Path) -> Path:
    (tmp_path / "seed001.py").write_text(SEED_001)
    (tmp_path / "seed004.py").write_text(SEED_004)
    (tmp_path / "others.py").write_text(OTHERS)
    return tmp_path


def test_seed_001s_mlp_takes_no_arguments_and_trains_on_flat_rows(files: Path) -> None:
    ref = f"{files / 'seed001.py'}:MLP"
    torch.manual_seed(3)
    model = models.build(ref, (1, 28, 28), 10)
    assert takes_flat_input(model) and model.training
    assert model(torch.zeros(4, 1, 28, 28)).shape == (4, 10)  # given images, it sees (4, 784)
    # the state_dict is the class's own (a checkpoint loads into the user's MLP()), and the
    # weights are those of MLP() built once after the same seed, though it was built twice
    import importlib.util
    spec = importlib.util.spec_from_file_location("seed001", files / "seed001.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    torch.manual_seed(3)
    own = module.MLP()
    assert list(model.state_dict()) == list(own.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), own.state_dict().values()))


def test_seed_004s_net_takes_cifar_images_and_says_why_not_fashion_mnist(files: Path) -> None:
    ref = f"{files / 'seed004.py'}:Net"
    check_user_model(ref, (3, 32, 32), 10)  # blank CIFAR-10-shaped images
    assert not takes_flat_input(models.build(ref, (3, 32, 32), 10))
    with pytest.raises(ModelFileError) as caught:
        check_user_model(ref, (1, 28, 28), 10)
    said = str(caught.value)
    assert said.startswith("Net takes neither images (2, *(1, 28, 28)) nor flat ones (2, 784): as images, "
                           "RuntimeError: ") and "; flat, RuntimeError: " in said
    assert "\n" not in said and len(said) < 700


def test_keywords_it_names_are_filled_and_functions_work_as_classes(files: Path) -> None:
    wide = models.build(f"{files / 'others.py'}:Wide", (3, 32, 32), 10)
    assert wide.args == (3, 10, 32) and not takes_flat_input(wide)
    linear = models.build(f"{files / 'others.py'}:Linear", (1, 28, 28), 10)
    assert linear.args == (784, 10, (1, 28, 28))
    made = models.build(f"{files / 'others.py'}:make_net", (1, 28, 28), 10)
    assert isinstance(made, torch.nn.Sequential) and made(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_a_flat_input_model_trains_and_its_log_says_so(files: Path) -> None:
    fashion = data.load("fashion-mnist")
    recorder = Recorder()
    result = fit(RunConfig(f"{files / 'seed001.py'}:MLP", epochs=1, limit=3000, seed=0),
                 recorder, dataset=fashion)
    assert result.status == RunState.FINISHED and result.test_acc is not None and result.test_acc > 0.4
    assert recorder.config_values["input"] == "flat (B, 784)"
    from dashboard.panes import model_html
    assert "input flat (B, 784)" in model_html(recorder.config_values)


def test_seed_004s_net_trains_on_cifar10_where_it_is_on_disk(files: Path) -> None:
    try:
        cifar = data.load("cifar10")
    except data.DataError as exc:
        pytest.skip(f"CIFAR-10 is not on this machine ({str(exc)[:120]}...); the shape check above ran on "
                    "blank 3x32x32 images")
    recorder = Recorder()
    result = fit(RunConfig(f"{files / 'seed004.py'}:Net", dataset="cifar10", epochs=1, limit=2000, seed=0),
                 recorder, dataset=cifar)
    assert result.status == RunState.FINISHED and "input" not in recorder.config_values


# seeds 000 and 002: the model built at the file's top level, its weights drawn again by init_weights
SEED_000 = """
import torch
from torch import nn

# PyTorch不会隐式地调整输入的形状。因此, 我们在线性层前定义了展平层(flatten),来调整网络输入的形状
net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))

def init_weights(m):
    if type(m) == nn.Linear:
        nn.init.normal_(m.weight, std=0.01)

net.apply(init_weights);
"""


def test_a_model_built_at_the_files_top_level_is_new_and_seeded_for_each_run(tmp_path: Path) -> None:
    (tmp_path / "seed000.py").write_text(SEED_000, encoding="utf-8")
    ref = f"{tmp_path / 'seed000.py'}:net"
    check_user_model(ref, (1, 28, 28), 10)
    assert models.spec(ref).description == f"net from {tmp_path / 'seed000.py'}"
    torch.manual_seed(3)
    first = models.build(ref, (1, 28, 28), 10)
    torch.manual_seed(3)
    again = models.build(ref, (1, 28, 28), 10)
    torch.manual_seed(4)
    other = models.build(ref, (1, 28, 28), 10)
    # the file run after the same seed: the same weights, init_weights' included
    torch.manual_seed(3)
    own: dict[str, object] = {}
    exec(compile(SEED_000, "seed000.py", "exec"), own)
    weights = [m.state_dict()["1.weight"] for m in (first, again, other, own["net"])]  # type: ignore[union-attr]
    assert torch.equal(weights[0], weights[1]) and torch.equal(weights[0], weights[3])
    assert not torch.equal(weights[0], weights[2])  # another seed, other weights
    assert first is not again and first[1].weight is not again[1].weight  # never one model for two runs
    result = fit(RunConfig(ref, epochs=1, limit=2000, seed=0), Recorder(), dataset=data.load("fashion-mnist"))
    assert result.status == RunState.FINISHED and result.test_acc is not None and result.test_acc > 0.5
