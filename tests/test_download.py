"""`livetrain data get`: torchvision's real downloaders (HTTP, checksums, unpacking) fetching
generated files in the standard layout from a mirror of our own on 127.0.0.1, never the internet;
and the one-line error when nothing answers."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torchvision.datasets as tvd
from click.testing import CliRunner

import launch
from tests.conftest import free_port
from tests.helpers import make_cifar, make_mnist
from trainers import data


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTP server on 127.0.0.1 serving the files put in the folder it returns."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/files", folder
    server.shutdown()
    server.server_close()


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def get(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(launch.cli, ["data", "get", *args], prog_name="livetrain")
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("name, cls", [("mnist", tvd.MNIST), ("fashion-mnist", tvd.FashionMNIST)])
def test_an_idx_data_set_downloads_from_a_mirror_and_loads(mirror: tuple[str, Path], tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch, name: str,
                                                           cls: type) -> None:
    url, folder = mirror
    arrays = make_mnist(folder / "files", n_train=40, n_test=10)
    # generated files, so torchvision is told their checksums (it checks each download against them)
    monkeypatch.setattr(cls, "resources", [(p.name, md5(p)) for p in sorted((folder / "files").iterdir())])
    # look only in our folder (Fashion-MNIST is also installed system-wide here)
    monkeypatch.setitem(data.SPECS, name, dataclasses.replace(data.SPECS[name], system_dir=None))
    monkeypatch.chdir(tmp_path)
    code, out, err = get(name, "--data-dir", str(tmp_path / "data"), "--mirror", url)
    assert code == 0, out + err
    target = tmp_path / "data" / cls.__name__ / "raw"
    assert f"{name}: downloaded into {target}" in out
    loaded = data.load(name, tmp_path / "data")
    assert np.array_equal(loaded.train.images[:, 0].numpy(), arrays["train"][0])
    code, out, _ = get(name, "--data-dir", str(tmp_path / "data"), "--mirror", url)
    assert code == 0 and "already here" in out  # a second get finds it and fetches nothing


def test_cifar10_downloads_from_a_mirror_and_loads(mirror: tuple[str, Path], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    url, folder = mirror
    monkeypatch.chdir(tmp_path)
    test_images = make_cifar(tmp_path / "made" / "cifar-10-batches-py", per_batch=8)
    (folder / "files").mkdir()
    archive = folder / "files" / tvd.CIFAR10.filename
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "made" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    monkeypatch.setattr(tvd.CIFAR10, "tgz_md5", md5(archive))
    code, out, err = get("cifar10", "--data-dir", str(tmp_path / "data"), "--mirror", url)
    assert code == 0, out + err
    loaded = data.load("cifar10", tmp_path / "data")
    assert np.array_equal(loaded.test.images.numpy(), test_images)


def test_a_file_that_fails_its_checksum_is_refused(mirror: tuple[str, Path], tmp_path: Path) -> None:
    url, folder = mirror
    make_mnist(folder / "files")  # served, but not the files torchvision's checksums name
    code, _, err = get("mnist", "--data-dir", str(tmp_path / "data"), "--mirror", url)
    assert code == 1 and err.startswith("Error: could not download MNIST") and len(err.strip().splitlines()) == 1


def test_offline_the_error_names_the_folder_to_fill(tmp_path: Path) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"  # reserved, and nothing listens there
    code, _, err = get("mnist", "--data-dir", str(tmp_path / "data"), "--mirror", nobody)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and "Traceback" not in err
    assert f"put its files in {tmp_path / 'data' / 'MNIST' / 'raw'} yourself" in lines[0]
    assert "Connection refused" in lines[0]
