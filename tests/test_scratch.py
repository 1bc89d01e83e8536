"""The from-scratch softmax, cross-entropy and SGD against torch.nn.functional: values and gradients."""

from __future__ import annotations

import ast
import inspect
import textwrap

import pytest
import torch
import torch.nn.functional as F

from trainers import models, scratch


def _logits(seed: int = 0, scale: float = 5.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(64, 10, generator=g, dtype=torch.float64) * scale).requires_grad_()


@pytest.mark.parametrize("ours, theirs", [(scratch.softmax, F.softmax), (scratch.log_softmax, F.log_softmax)])
def test_softmax_values_and_gradients_match_torch(ours, theirs) -> None:
    a = _logits()
    b = a.detach().clone().requires_grad_()
    weights = torch.randn(64, 10, dtype=torch.float64)  # a non-trivial upstream gradient
    out_a, out_b = ours(a), theirs(b, dim=1)
    torch.testing.assert_close(out_a, out_b, rtol=0, atol=1e-6)
    (out_a * weights).sum().backward()
    (out_b * weights).sum().backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=1e-6)


@pytest.mark.parametrize("scale", [1.0, 50.0, 1e4])
def test_cross_entropy_values_and_gradients_match_torch(scale: float) -> None:
    a = _logits(seed=1, scale=scale)
    b = a.detach().clone().requires_grad_()
    labels = torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(2))
    ours, theirs = scratch.cross_entropy(a, labels), F.cross_entropy(b, labels)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    ours.backward()
    theirs.backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=1e-6)


def test_softmax_is_shift_invariant_and_finite_for_huge_logits() -> None:
    torch.testing.assert_close(scratch.softmax(torch.tensor([[100.0, 101.0, 102.0]])),
                               scratch.softmax(torch.tensor([[-2.0, -1.0, 0.0]])))
    huge = torch.tensor([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]], requires_grad=True)
    loss = scratch.cross_entropy(huge, torch.tensor([1, 0]))  # both true classes sit at -1e4
    assert torch.isfinite(loss) and loss.item() == pytest.approx(2e4, rel=1e-6)
    loss.backward()
    assert torch.isfinite(huge.grad).all()
    assert torch.isfinite(scratch.softmax(huge)).all()


def test_sgd_step_matches_torch_optim_sgd() -> None:
    w1 = torch.randn(5, 3, requires_grad=True)
    w2 = w1.detach().clone().requires_grad_()
    ours, theirs = scratch.SGD([w1], lr=0.1), torch.optim.SGD([w2], lr=0.1)
    for _ in range(3):
        for w, opt in ((w1, ours), (w2, theirs)):
            opt.zero_grad()
            (w**2).sum().backward()
            opt.step()
    torch.testing.assert_close(w1, w2)
    assert w1.grad is not None


def test_softmax_regression_is_raw_tensors() -> None:
    torch.manual_seed(0)
    model = models.SoftmaxRegression(784, 10)
    assert not isinstance(model, torch.nn.Module)
    assert model.W.shape == (784, 10) and model.b.shape == (10,)
    assert abs(model.W.std().item() - 0.01) < 0.0005 and model.b.abs().sum() == 0
    x = torch.rand(8, 1, 28, 28)
    torch.testing.assert_close(model(x), F.linear(x.reshape(8, -1), model.W.T, model.b))
    for code in (inspect.getsource(scratch), inspect.getsource(models.SoftmaxRegression)):
        assert not [name for name in _dotted_names(code) if name.startswith(FORBIDDEN)]


FORBIDDEN = ("torch.nn", "torch.optim", "nn.", "F.", "torch.softmax", "torch.log_softmax")


def _dotted_names(code: str) -> set[str]:
    """Every dotted name the code uses (imports and attribute chains), docstrings ignored."""
    names = set()
    for node in ast.walk(ast.parse(textwrap.dedent(code))):
        if isinstance(node, ast.Attribute):
            parts, inner = [node.attr], node.value
            while isinstance(inner, ast.Attribute):
                parts.append(inner.attr)
                inner = inner.value
            if isinstance(inner, ast.Name):
                names.add(".".join([inner.id, *reversed(parts)]))
        elif isinstance(node, ast.ImportFrom):
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_the_forbidden_name_check_can_fail() -> None:
    assert "torch.optim.SGD" in _dotted_names("import torch\nopt = torch.optim.SGD([], lr=1)")
    assert "F.cross_entropy" in _dotted_names("loss = F.cross_entropy(a, b)")


def test_cnn_takes_both_input_sizes() -> None:
    for shape in ((1, 28, 28), (3, 32, 32)):
        model = models.build("cnn", shape, 10)
        assert model(torch.rand(4, *shape)).shape == (4, 10)


def test_mlp_uses_kaiming_init() -> None:
    torch.manual_seed(0)
    first = models.build("mlp", (1, 28, 28), 10).net[1]
    # He init: std = sqrt(2 / fan_in)
    assert first.weight.std().item() == pytest.approx((2 / 784) ** 0.5, rel=0.05)
