"""The course's notebook, executed headless as Jupyter would (nbclient, a real kernel), streaming
to a real server; and `serve()` and `Dashboard.show()`, what a notebook calls."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest

from dashboard import adapter
from dashboard.adapter import Dashboard, DashboardOptions, serve
from dashboard.runlog import read
from dashboard.server import Found, ServerProcess, probe
from dashboard.windows import DrawOptions
from tests.conftest import REPO, free_port
from tests.helpers import drawn_from_log, server_state, traces
from trainers.errors import UsageError
from trainers.reporting import TEST_ACC, TRAIN_LOSS

NOTEBOOK = REPO / "examples" / "softmax_from_scratch.ipynb"
EPOCHS = 2  # the notebook's 10, cut for the test


@pytest.mark.slow
def test_the_softmax_notebook_streams_its_loop_to_the_page(visdom_server: ServerProcess, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert not [cell for cell in notebook.cells if cell.get("outputs")]  # shipped without outputs
    source = "\n".join(cell.source for cell in code)
    assert "urllib" not in source and "download" not in source  # nothing in it downloads
    (last,) = [cell for cell in code if "num_epochs = 10" in cell.source]
    last.source = last.source.replace("num_epochs = 10", f"num_epochs = {EPOCHS}")
    port = visdom_server.config.url.rsplit(":", 1)[1]
    monkeypatch.setenv("VISDOM_PORT", port)  # serve() finds the test's server there and uses it
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    shown = [o for o in code[0].outputs if o.output_type in ("display_data", "execute_result")]
    assert f'src="{visdom_server.config.url}/env/notebook"' in shown[0].data["text/html"]  # dash.show()
    printed = "".join(o.get("text", "") for o in code[-1].outputs)
    assert printed.count("epoch ") == EPOCHS, printed
    record = read(tmp_path / "runs" / "softmax-scratch")
    assert record.status == "finished"
    assert len(record.series(TRAIN_LOSS)[0]) == EPOCHS * 235  # every batch of 60,000 images in 256s
    accuracy = record.series(TEST_ACC)[1][-1]
    assert 0.75 < accuracy < 0.9 and f"test acc {accuracy:.3f}" in printed
    held = traces(server_state(visdom_server.config.url, "notebook"), "compare-train-loss")
    assert held["softmax-scratch"] == drawn_from_log(record, TRAIN_LOSS, 1000).points()


def test_serve_starts_a_server_for_the_notebook_or_finds_one(visdom_server: ServerProcess, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    port = int(visdom_server.config.url.rsplit(":", 1)[1])
    assert serve(port) == visdom_server.config.url  # one answers: used, none started
    monkeypatch.chdir(tmp_path)  # a started server keeps its env files under ./runs/visdom
    free = free_port()
    url = serve(free)
    assert url == f"http://127.0.0.1:{free}" and probe(url) == Found.VISDOM
    dash = Dashboard(tmp_path / "run", "a b", DashboardOptions(url, DrawOptions(env="my env")))
    assert dash.page_url == f"{url}/env/my%20env" and "<html" in urllib.request.urlopen(dash.page_url).read().decode()
    frame = dash.show(800, 600)
    assert (frame.src, frame.width, frame.height) == (dash.page_url, 800, 600)
    dash.close()
    with pytest.raises(UsageError, match="no server"):
        Dashboard(tmp_path / "headless", "h").show()
    adapter._started.pop().stop()
    assert probe(url) == Found.NONE
