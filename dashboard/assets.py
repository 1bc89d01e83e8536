"""Visdom's frontend files, provisioned once from the npm registry so the server never downloads.

`python -m visdom.server` fetches about 20 files from CDNs at every start and crashes offline.
Every one of them is in the npm registry at the versions `visdom/server/build.py` names; this
module packs those tarballs with `npm pack` (setup time, registry only) and copies each file to
the name `build.py` would have saved it under, in the installed visdom's `static/` folder. It knows
each visdom release's list (`PAGES`: 0.2.4 and 0.3.0).

    python -m dashboard.assets            # install what is missing (idempotent)
    python -m dashboard.assets --check    # exit 1 and name the setup command if anything is missing
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import re
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from trainers.errors import LivetrainError
from trainers.installation import cache_dir as setup_cache, setup_command

# MathJax 2 (visdom 0.2.4's page): the subtrees the page can load: the entry point and the config it
# names, plus what those load on demand (input/output jax, extensions, English strings, web fonts).
MATHJAX2_TREES = (
    "MathJax.js",
    "config",
    "extensions",
    "jax",
    "localization/en",
    "fonts/HTML-CSS/TeX/woff",
    "fonts/HTML-CSS/TeX/otf",
)
# The eight MathJax files 0.2.4's build.py fetches; present and non-empty means MathJax is installed.
MATHJAX2_REQUIRED = (
    "MathJax.js",
    "config/Safe.js",
    "config/TeX-AMS-MML_HTMLorMML.js",
    "extensions/Safe.js",
    "jax/output/SVG/fonts/TeX/fontdata.js",
    "jax/output/SVG/jax.js",
    "jax/output/SVG/fonts/TeX/Size1/Regular/Main.js",
    "jax/output/SVG/config.js",
)
# MathJax 3 (visdom 0.3's page): the one combined file its build.py fetches, and the TeX
# extensions that file's autoload fetches on demand.
MATHJAX3_TREES = ("es5/tex-mml-svg.js", "es5/input/tex/extensions")
MATHJAX3_REQUIRED = ("es5/tex-mml-svg.js",)


class AssetError(LivetrainError):
    """A one-line, user-facing reason why the frontend files cannot be installed or are missing."""


@dataclass(frozen=True)
class Asset:
    """One file of Visdom's page: where it lies in an npm tarball and where visdom expects it."""

    package: str  # npm spec, name@version
    source: str  # path inside the tarball
    target: str  # path under visdom's static/ folder


@dataclass(frozen=True)
class PageFiles:
    """The third-party files one visdom version's page loads, as its `server/build.py` names them."""

    version: str  # what build.py writes to static/version.built
    assets: tuple[Asset, ...]
    mathjax: str  # npm spec
    mathjax_trees: tuple[str, ...]  # what of its tarball's package/ to install
    mathjax_required: tuple[str, ...]  # present and non-empty means MathJax is installed

    @property
    def mathjax_dir(self) -> str:
        return f"js/mathjax/{self.mathjax.rpartition('@')[2]}"

    def wanted(self) -> list[str]:
        return [a.target for a in self.assets] + [f"{self.mathjax_dir}/{p}" for p in self.mathjax_required]


_BS = "bootstrap@3.3.7"
_GLYPHS = "glyphicons-halflings-regular"
_SHARED: tuple[Asset, ...] = (
    Asset("jquery@3.1.1", "package/dist/jquery.min.js", "js/jquery.min.js"),
    Asset(_BS, "package/dist/js/bootstrap.min.js", "js/bootstrap.min.js"),
    Asset(_BS, "package/dist/css/bootstrap.min.css", "css/bootstrap.min.css"),
    Asset("react@16.2.0", "package/umd/react.production.min.js", "js/react-react.min.js"),
    Asset("react-dom@16.2.0", "package/umd/react-dom.production.min.js", "js/react-dom.min.js"),
    Asset("react-modal@3.1.10", "package/dist/react-modal.min.js", "js/react-modal.min.js"),
    Asset("plotly.js-dist-min@2.11.1", "package/plotly.min.js", "js/plotly-plotly.min.js"),
    Asset("sjcl@1.0.7", "package/sjcl.js", "js/sjcl.js"),
    Asset("layout-bin-packer@1.4.0", "package/dist/layout-bin-packer.js", "js/layout_bin_packer.js"),
    Asset(
        "layout-bin-packer@1.4.0",
        "package/dist/layout-bin-packer.js.map",
        "js/layout-bin-packer.js.map",
    ),
    Asset("d3@3.5.17", "package/d3.min.js", "js/d3.v3.min.js"),
    Asset(
        "d3-selection-multi@1.0.1",
        "package/build/d3-selection-multi.js",
        "js/d3-selection-multi.v1.js",
    ),
    Asset("save-svg-as-png@1.4.17", "package/lib/saveSvgAsPng.js", "js/saveSvgAsPng.js"),
    Asset("classnames@2.2.5", "package/index.js", "fonts/classnames"),
    *(
        Asset(_BS, f"package/dist/fonts/{_GLYPHS}.{ext}", f"fonts/{_GLYPHS}.{ext}")
        for ext in ("eot", "woff2", "woff", "ttf", "svg")
    ),
    # build.py saves the SVG font under its URL's fragment too; keep that name for parity.
    Asset(_BS, f"package/dist/fonts/{_GLYPHS}.svg", f"fonts/{_GLYPHS}.svg#glyphicons_halflingsregular"),
)


def _grid_css(resizable: str, grid: str) -> tuple[Asset, ...]:
    return (Asset(f"react-resizable@{resizable}", "package/css/styles.css", "css/react-resizable-styles.css"),
            Asset(f"react-grid-layout@{grid}", "package/css/styles.css", "css/react-grid-layout-styles.css"))


# Each visdom release livetrain serves (setup.cfg: visdom>=0.2.4,<0.4). 0.3.0 changed two style
# sheets' versions and moved to MathJax 3; its other files are 0.2.4's.
PAGES: dict[str, PageFiles] = {
    "0.2.4": PageFiles("0.2.4", _SHARED + _grid_css("1.4.6", "0.16.3"), "mathjax@2.7.5",
                       MATHJAX2_TREES, MATHJAX2_REQUIRED),
    "0.3.0": PageFiles("0.3.0", _SHARED + _grid_css("3.1.3", "2.2.3"), "mathjax@3.2.2",
                       MATHJAX3_TREES, MATHJAX3_REQUIRED),
}


def static_dir() -> Path:
    """The installed visdom package's `static/` folder (found without importing visdom)."""
    spec = importlib.util.find_spec("visdom")
    if spec is None or not spec.submodule_search_locations:
        raise AssetError(f"visdom is not installed in this Python; run `{setup_command()}`")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def installed_version(static: Path) -> str:
    """The visdom version whose `static/` folder this is: its package's VERSION file, else the
    installed distribution's version."""
    try:
        return (static.parent / "VERSION").read_text().strip()
    except OSError:
        pass
    try:
        return importlib.metadata.version("visdom")
    except importlib.metadata.PackageNotFoundError:
        raise AssetError(f"visdom is not installed; install it: `{setup_command()}`") from None


def version_key(version: str) -> tuple[int, ...]:
    """"0.3.0" -> (0, 3, 0), to compare versions."""
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


def page_files(version: str) -> PageFiles:
    """The page files of visdom `version`: those of the newest release livetrain knows that is not
    newer (a patch release keeps its page's files). `version.built` gets `version` itself."""
    key = version_key
    known = [v for v in PAGES if key(v) <= key(version)]
    if not known or key(version)[:2] > key(max(PAGES, key=key))[:2]:
        raise AssetError(f"livetrain serves visdom {', '.join(PAGES)} (and their patch releases), not "
                         f"{version}; install one of them: `pip install 'visdom>=0.2.4,<0.4'`")
    return replace(PAGES[max(known, key=key)], version=version)


def missing(static: Path, page: PageFiles | None = None) -> list[str]:
    """Paths under `static` that the page (`page`: the installed visdom's) needs and that are absent
    or empty."""
    page = page or page_files(installed_version(static))
    absent = [t for t in page.wanted() if not _non_empty(static / t)]
    built = static / "version.built"
    if not built.is_file() or built.read_text().strip() != page.version:
        absent.append("version.built")
    return absent


def check(static: Path | None = None) -> None:
    """Raise AssetError with a one-line fix when any frontend file is missing."""
    static = static or static_dir()
    absent = missing(static)
    if absent:
        shown = ", ".join(absent[:3]) + (f" and {len(absent) - 3} more" if len(absent) > 3 else "")
        raise AssetError(
            f"Visdom's page files are missing from {static} ({shown}); "
            f"run `{setup_command()}` to install them from the npm registry"
        )


def install(static: Path | None = None, cache_dir: Path | None = None) -> list[str]:
    """Install every missing file; return the targets written (empty when all were present).
    The npm tarballs are kept in `cache_dir` (by default setup's cache: see trainers.installation)."""
    static = static or static_dir()
    cache_dir = cache_dir or setup_cache() / "npm"
    page = page_files(installed_version(static))
    absent = set(missing(static, page))
    if not absent:
        return []
    needed = {a.package for a in page.assets if a.target in absent}
    need_mathjax = any(t.startswith(page.mathjax_dir + "/") for t in absent)
    if need_mathjax:
        needed.add(page.mathjax)
    tarballs = _npm_pack(sorted(needed), cache_dir)

    written: list[str] = []
    for asset in page.assets:
        if asset.target in absent:
            with tarfile.open(tarballs[asset.package]) as tar:
                _write(static / asset.target, _read_member(tar, asset.source, asset.package))
            written.append(asset.target)
    if need_mathjax:
        written += _install_mathjax(page, tarballs[page.mathjax], static)
    (static / "version.built").write_text(page.version)
    written.append("version.built")
    check(static)
    return written


def _install_mathjax(page: PageFiles, tarball: Path, static: Path) -> list[str]:
    written = []
    with tarfile.open(tarball) as tar:
        for member in tar.getmembers():
            rel = PurePosixPath(member.name).relative_to("package")
            if not member.isfile() or ".." in rel.parts:
                continue
            if any(str(rel) == t or str(rel).startswith(t + "/") for t in page.mathjax_trees):
                _write(static / page.mathjax_dir / rel, _read_member(tar, member.name, page.mathjax))
                written.append(f"{page.mathjax_dir}/{rel}")
    return written


def _npm_pack(specs: list[str], cache_dir: Path) -> dict[str, Path]:
    """Fetch each `name@version` tarball into `cache_dir` (once); map spec -> tarball path."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    paths = {spec: cache_dir / _tarball_name(spec) for spec in specs}
    todo = [spec for spec, path in paths.items() if not _non_empty(path)]
    if todo:
        npm = shutil.which("npm")
        if npm is None:
            raise AssetError(
                "npm is needed once, to fetch Visdom's page files from the npm registry; "
                "install Node.js and npm (e.g. `apt-get install npm`), then rerun "
                f"`{setup_command()}`"
            )
        proc = subprocess.run(
            [npm, "pack", "--silent", "--pack-destination", str(cache_dir), *todo],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise AssetError(f"`npm pack` failed for {', '.join(todo)}: {last}")
    for spec, path in paths.items():
        if not _non_empty(path):
            raise AssetError(f"`npm pack {spec}` did not produce {path}")
    return paths


def _tarball_name(spec: str) -> str:
    # npm names a tarball "<name without scope>-<version>.tgz"
    name, _, version = spec.rpartition("@")
    return f"{name.split('/')[-1]}-{version}.tgz"


def _read_member(tar: tarfile.TarFile, name: str, package: str) -> bytes:
    try:
        handle = tar.extractfile(name)
    except KeyError:
        handle = None
    if handle is None:
        raise AssetError(f"{package}'s tarball has no {name}; delete the cached tarball ({setup_cache() / 'npm'}) "
                         f"and rerun `{setup_command()}`")
    return handle.read()


def _write(path: Path, data: bytes) -> None:
    if not data:
        raise AssetError(f"refusing to install an empty file as {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(path)


def _non_empty(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check, install nothing")
    parser.add_argument("--cache-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        if args.check:
            check()
            print(f"Visdom page files: all present in {static_dir()}")
            return 0
        written = install(cache_dir=args.cache_dir)
    except AssetError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    if written:
        print(f"Visdom page files: installed {len(written)} files into {static_dir()}")
    else:
        print(f"Visdom page files: all present in {static_dir()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
