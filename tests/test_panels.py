"""Windows that are one module each (dashboard.panels): the numbers their trainer side computes,
against a hand computation, and the window each draws from its records."""

from __future__ import annotations

from dashboard import panels


def test_every_panel_has_a_kind_of_its_own_and_a_waiting_window() -> None:
    assert len(panels.BY_KIND) == len(panels.PANELS)
    names = [message["win"] for message in panels.run_placeholders("env", "mlp")]
    assert len(names) == len(set(names)) and all(panel.win("mlp") in names for panel in panels.PANELS)
