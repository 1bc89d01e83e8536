"""A setting is declared once (trainers.settings), and every way in takes it from there: the
config's checks, `run`'s options, `--set`, experiment files, `--resume`'s refusals, `control`,
the runs table and the sweep plots."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import launch
from dashboard import panes, sweep
from dashboard.launch import experiment, grid
from dashboard.launch.control import parse_values
from dashboard.launch.plan import PlanError
from trainers import control, settings
from trainers.config import ConfigError, RunConfig
from trainers.settings import BY_NAME, DECLARED, EVERY_RUN, FLOAT, INT, NAME, WIDTHS

IDENTITY = {"model", "label", "preset"}  # what a run is and is called, not how it trains


def test_every_setting_is_a_config_field_and_every_field_a_setting() -> None:
    assert {s.name for s in DECLARED} == {f.name for f in fields(RunConfig)} - IDENTITY
    assert len(BY_NAME) == len(DECLARED)


def bad_and_good(setting: settings.Setting) -> tuple[list, list]:
    """Values its declaration refuses, and values it takes."""
    if setting.kind == NAME:
        return ["no-such-" + setting.name], list(setting.choices)
    if setting.kind == WIDTHS:
        return [(0,), (setting.high + 1,)], [(1,), (int(setting.high),)]
    low, high = setting.low, setting.high
    if setting.kind == INT:
        return [low - 1] + ([high + 1] if high is not None else []), [low] + ([high] if high is not None else [])
    if high is None:  # a positive number
        return [low, -1.0, float("nan"), float("inf")], [1e-9, 3.0]
    return [low - 0.5, high, float("nan")], [low, (low + high) / 2]


@pytest.mark.parametrize("setting", [s for s in DECLARED if s.kind != "folder"], ids=lambda s: s.name)
def test_each_declared_bound_is_the_configs_check_with_a_line_that_names_it(setting: settings.Setting) -> None:
    bad, good = bad_and_good(setting)
    model = "cnn" if setting.name == "channels" else "mlp"
    extra = {"optimizer": "sgd"} if setting.name == "momentum" else {}
    for value in bad:
        with pytest.raises(ConfigError) as refused:
            RunConfig(model, **{setting.name: value, **extra}).check()
        assert setting.said in str(refused.value) and "\n" not in str(refused.value)
    for value in good:
        RunConfig(model, **{setting.name: value, **extra}).check()


def test_run_has_an_option_for_every_run_setting_with_its_bounds() -> None:
    params = {p.name: p for p in launch.cli.commands["run"].params}
    for name in EVERY_RUN:
        setting, option = BY_NAME[name], params[name]
        assert option.opts == [f"--{setting.flag}"], name
        if setting.kind == INT:
            assert isinstance(option.type, click.IntRange) and (option.type.min, option.type.max) == (setting.low, setting.high)
        elif setting.kind == FLOAT:
            assert isinstance(option.type, click.FloatRange) and option.type.min == setting.low
        elif setting.kind == NAME:
            assert tuple(option.type.choices) == setting.choices


def test_set_and_experiment_files_take_every_per_run_setting_read_the_same() -> None:
    assert grid.SETTINGS == tuple(s.name for s in DECLARED if s.per_run)
    assert experiment.COMMON == EVERY_RUN
    for setting in DECLARED:
        if not setting.per_run:
            with pytest.raises(PlanError, match="no setting"):
                grid.parse_setting(f"mlp.{setting.flag}=1")
            continue
        written = {INT: "3", FLOAT: "0.5", NAME: (setting.choices or ("x",))[0], WIDTHS: "8,8"}[setting.kind]
        _, key, [(_, value)] = grid.parse_setting(f"mlp.{setting.flag}={written}")
        assert key == setting.name and value == setting.read(written)


@pytest.mark.parametrize("name", settings.NOT_ON_RESUME)
def test_resume_refuses_each_setting_it_cannot_change(tmp_path: Path, name: str) -> None:
    setting = BY_NAME[name]
    value = {INT: "3", FLOAT: "0.5", NAME: (setting.choices or ("x",))[-1], "folder": str(tmp_path)}[setting.kind]
    result = CliRunner().invoke(launch.cli, ["run", "--resume", str(tmp_path), f"--{setting.flag}", value],
                                prog_name="livetrain")
    assert result.exit_code == 2 and f"drop --{setting.flag}" in result.output, result.output


def test_control_the_runs_table_and_sweeps_read_the_declarations() -> None:
    assert control.SETTABLE == tuple(s.name for s in DECLARED if s.live) == ("lr", "momentum", "weight_decay")
    assert set(control.FORKABLE) == {s.name for s in DECLARED if s.forked}
    with pytest.raises(ConfigError, match="weight-decay must be a number, not 'lots'"):
        parse_values(["weight-decay=lots"])
    with pytest.raises(ConfigError, match=re.escape("'lrate=0.1': write SETTING=VALUE with one of lr,")):
        parse_values(["lrate=0.1"])  # no near miss: no guess
    with pytest.raises(ConfigError, match=re.escape("'weight_decy=0' (did you mean 'weight-decay'?): write SETTING")):
        parse_values(["weight_decy=0"])
    with pytest.raises(ConfigError, match=re.escape("'seed=3': write")):
        parse_values(["seed=3"], control.FORKABLE)  # a setting, but not a fork's: no guess
    table = panes.runs_html([panes.RunSummary("r", config={"model": "mlp", "dropout": 0.5, "nproc": 2})])
    assert all(f">{column}</th>" in table for column, _ in settings.COLUMNS) and "dropout 0.5" in table
    assert "device" not in sweep.SETTINGS and "lr" in sweep.SETTINGS


def test_label_smoothing_is_cross_entropys_and_is_tested_on_its_own_loss() -> None:
    """A recipe's smoothing applies where the run trains on cross-entropy; given on another
    loss, or on the hand-written softmax, it is a one-line error; a smoothed run's test loss is
    its own loss (so train and test compare), cross-entropy besides."""
    import torch
    import torch.nn.functional as F

    from trainers import losses

    assert RunConfig("mlp", loss="mse").resolved().label_smoothing == 0.0
    assert RunConfig("mlp", label_smoothing=0.1).resolved().label_smoothing == 0.1
    for config in (RunConfig("mlp", loss="mse", label_smoothing=0.1), RunConfig("softmax", label_smoothing=0.1)):
        with pytest.raises(ConfigError, match="^label smoothing is cross-entropy's"):
            config.resolved()
    logits, labels = torch.randn(8, 10), torch.arange(8)
    smoothed = losses.get("ce", smoothing=0.1)(logits, labels)
    assert torch.isclose(smoothed, F.cross_entropy(logits, labels, label_smoothing=0.1))
    assert not torch.isclose(smoothed, F.cross_entropy(logits, labels))
    from trainers.loop import fit
    from trainers.reporting import TEST_LOSS, TEST_OBJECTIVE, Recorder

    recorder = Recorder()
    fit(RunConfig("mlp", label_smoothing=0.2, epochs=1, limit=512, device="cpu"), recorder)
    objective, cross_entropy = recorder.series(TEST_OBJECTIVE), recorder.series(TEST_LOSS)
    assert len(objective) == len(cross_entropy) == 2 and objective[-1] > cross_entropy[-1]  # smoothing's floor
