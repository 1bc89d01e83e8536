"""A person's own model, named `path/to/file.py:Name`: an `nn.Module` class, or a function that
returns one, imported from the file and built as its signature allows (nothing, or some of
`num_classes`, `image_shape`, `in_channels`, `num_inputs` by name); or a model the file builds at
its top level, as the course notes do (`net = nn.Sequential(...)`, then `net.apply(init_weights)`),
the file run again for each model, so its weights come from the run's seed. It is given (B, C, H, W)
images, or flat (B, C*H*W) rows when that is what it takes (course notes' MLPs). Everything that
can go wrong is a `ModelFileError`, said before any run starts."""

from __future__ import annotations

import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainers.catalog import ModelFileError
from trainers.errors import did_you_mean

Shape = tuple[int, int, int]


def _flat(shape: Shape) -> int:
    return shape[0] * shape[1] * shape[2]


# What livetrain can give a model's constructor, by the name of its parameter
FILLABLE = ("num_classes", "image_shape", "in_channels", "num_inputs")
BATCH_NAMES = ("X", "x", "input", "inputs", "images", "imgs", "batch")  # a forward function's batch, by name
_FLAT = "_livetrain_flat_input"  # set on a user's model that trains on flattened images


def load_user_factory(ref: str) -> Callable[..., Any]:
    """What `path.py:Name` names: an nn.Module class, or a function that returns an nn.Module,
    imported from the file."""
    path_text, _, name = ref.rpartition(":")
    path = Path(path_text)
    if not path.is_file():
        raise ModelFileError(f"no model file {path}; give PATH.py:Name of an nn.Module class (or a function "
                             "returning one, or a model the file builds)")
    module_name = f"livetrain_model_{abs(hash(str(path.resolve())))}"
    module = sys.modules.get(module_name) or _execute(path, module_name)
    factory = getattr(module, name, None)
    if factory is None:
        found = sorted(n for n, v in vars(module).items()
                       if isinstance(v, nn.Module) or (isinstance(v, type) and issubclass(v, nn.Module)
                                                       or inspect.isfunction(v)) and v.__module__ == module_name)
        raise ModelFileError(f"{path} has no {name!r}{did_you_mean(name, found)}; its nn.Module classes, functions "
                             "and models: "
                             f"{', '.join(found) or 'none'}")
    if isinstance(factory, nn.Module):
        return _built_at_top_level(path, module_name, name)
    if isinstance(factory, type) and not issubclass(factory, nn.Module) or not callable(factory):
        raise ModelFileError(f"{path}:{name} is neither an nn.Module class, a function that returns one, nor a "
                             "model")
    return factory


def _execute(path: Path, module_name: str) -> Any:
    """The module of the file at `path`, run (again) as `module_name`."""
    loader = importlib.util.spec_from_file_location(module_name, path)
    if loader is None or loader.loader is None:
        raise ModelFileError(f"{path} is not a Python file; give PATH.py:Name of an nn.Module class")
    module = importlib.util.module_from_spec(loader)
    try:
        loader.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - whatever the user's file raises on import
        raise ModelFileError(f"{path} does not import: {type(exc).__name__}: {_said(exc)}") from None
    sys.modules[module_name] = module
    return module


def _built_at_top_level(path: Path, module_name: str, name: str) -> Callable[[], nn.Module]:
    """A function that runs the file again and returns its model `name`: a new model each time,
    its weights drawn (and initialised, as by the file's own `net.apply(...)`) from the random
    state of the moment, the run's seed, as a class's are; never one model shared by two runs."""

    def build() -> nn.Module:
        model = getattr(_execute(path, module_name), name, None)
        if not isinstance(model, nn.Module):
            raise ModelFileError(f"{path}:{name} was a model when the file first ran, and is not now")
        return model

    build.__name__ = name
    return build


def _said(exc: BaseException, limit: int = 300) -> str:
    """An exception's message on one line, cut to `limit` characters."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def constructor_arguments(factory: Callable[..., Any], image_shape: Shape, num_classes: int) -> dict[str, Any]:
    """The keyword arguments to build a user's model with: those of FILLABLE its signature names
    (none when it takes none). A parameter it requires that livetrain cannot fill is an error
    naming it."""
    name = getattr(factory, "__name__", "the model")
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # no signature to read (a builtin): call it bare
        return {}
    values = {"num_classes": num_classes, "image_shape": tuple(image_shape), "in_channels": image_shape[0],
              "num_inputs": _flat(image_shape)}
    given: dict[str, Any] = {}
    for p in parameters:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.name in values and p.kind != p.POSITIONAL_ONLY:
            given[p.name] = values[p.name]
        elif p.default is p.empty and inspect.isfunction(factory) and p.name in BATCH_NAMES:
            raise ModelFileError(f"{name}({p.name}) is a forward pass (it takes the batch), not a model; give "
                                 "livetrain the model: an nn.Module class, or a function that returns one (the "
                                 "course's softmax from scratch is built in: --models softmax)")
        elif p.default is p.empty:
            raise ModelFileError(f"{name} requires the argument {p.name!r}, which livetrain cannot fill; give it a "
                                 f"default, or name it one of {', '.join(FILLABLE)}")
    return given


def _call(factory: Callable[..., Any], kwargs: dict[str, Any]) -> str:
    name = getattr(factory, "__name__", "model")
    return f"{name}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"


def construct_user_model(ref: str, image_shape: Shape, num_classes: int) -> nn.Module:
    """The user's model, built as its signature allows (see `constructor_arguments`)."""
    factory = load_user_factory(ref)
    kwargs = constructor_arguments(factory, image_shape, num_classes)
    try:
        model = factory(**kwargs)
    except Exception as exc:  # noqa: BLE001 - whatever the user's code raises
        raise ModelFileError(f"{_call(factory, kwargs)} failed: {type(exc).__name__}: {_said(exc)}") from None
    if not isinstance(model, nn.Module):
        raise ModelFileError(f"{_call(factory, kwargs)} returned {type(model).__name__}, not an nn.Module")
    return model


def _try(model: nn.Module, batch: torch.Tensor, num_classes: int) -> str:
    """"" when `model` maps `batch` to logits (B, num_classes), else what went wrong."""
    try:
        with torch.no_grad():
            out = model(batch)
    except Exception as exc:  # noqa: BLE001 - whatever the user's code raises
        return f"{type(exc).__name__}: {_said(exc, 200)}"
    if not isinstance(out, torch.Tensor):
        return f"it returns {type(out).__name__}"
    if tuple(out.shape) != (batch.shape[0], num_classes):
        return f"it returns {tuple(out.shape)}"
    return ""


def _flatten_input(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    return (args[0].flatten(1), *args[1:])  # (B, C, H, W) -> (B, C*H*W)


def build_user_model(ref: str, image_shape: Shape, num_classes: int) -> nn.Module:
    """A user's model for images of `image_shape`: given (B, C, H, W) batches when it takes them,
    else flat (B, C*H*W) ones, as course notes' MLPs expect (a forward pre-hook flattens them,
    so the model's state_dict stays its own). Tried on two blank images in eval mode (no dropout,
    no batch statistics touched); fails on both is one error naming the shapes tried."""
    rng = torch.get_rng_state()
    model = construct_user_model(ref, image_shape, num_classes)
    name = ref.rsplit(":", 1)[1]
    images = torch.zeros(2, *image_shape)
    as_images = _try(model.eval(), images, num_classes)
    if as_images:
        # built again, from the same random state (the same weights as if built once): a lazy
        # layer took its shape from the images just tried
        torch.set_rng_state(rng)
        model = construct_user_model(ref, image_shape, num_classes)
        as_flat = _try(model.eval(), images.flatten(1), num_classes)
        if as_flat:
            flat = (2, _flat(image_shape))
            if as_images.startswith("it returns") and as_flat.startswith("it returns"):
                raise ModelFileError(f"{name} returns {as_images[11:]} for a batch of 2 images of {image_shape} "
                                     f"and {as_flat[11:]} for them flat {flat}; it must return logits of shape "
                                     f"(2, {num_classes})")
            raise ModelFileError(f"{name} takes neither images (2, *{image_shape}) nor flat ones {flat}: "
                                 f"as images, {as_images}; flat, {as_flat}")
        model.register_forward_pre_hook(_flatten_input)
        setattr(model, _FLAT, True)
    return model.train()


def takes_flat_input(model: Any) -> bool:
    """Whether `model` (a user's) trains on flattened images (see `build_user_model`)."""
    return bool(getattr(model, _FLAT, False))


def check_user_model(name: str, image_shape: Shape, num_classes: int) -> None:
    """Build a model from a file for this data and try it on two blank images (see
    `build_user_model`). Said before any run starts, not by the run's worker."""
    build_user_model(name, image_shape, num_classes)
