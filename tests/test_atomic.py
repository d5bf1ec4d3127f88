"""Atomic writes: the user's umask, any name length, errors that name the target."""

from __future__ import annotations

import contextlib
import errno
import os
import stat

import pytest

from asttag.atomic import atomic_directory, atomic_path, atomic_write_text


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_files_and_directories_get_the_umask(tmp_path, mask):
    with umask(mask):
        atomic_write_text(tmp_path / "out.csv", "x\n")
        with atomic_directory(tmp_path / "hf") as tmp:
            (tmp / "config.json").write_text("{}")
    assert mode(tmp_path / "out.csv") == 0o666 & ~mask
    assert mode(tmp_path / "hf") == 0o777 & ~mask


@pytest.mark.parametrize("length", [200, 244, 255])
def test_names_up_to_the_file_system_limit(tmp_path, length):
    target = tmp_path / ("n" * (length - 4) + ".csv")
    atomic_write_text(target, "x\n")
    assert target.read_text() == "x\n"
    assert os.listdir(tmp_path) == [target.name]


def test_a_long_multibyte_name(tmp_path):
    target = tmp_path / ("é" * 125 + ".csv")  # 254 bytes in UTF-8
    atomic_write_text(target, "x\n")
    assert os.listdir(tmp_path) == [target.name]


def test_a_directory_in_the_way_is_refused_before_any_work(tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(IsADirectoryError) as caught, atomic_path(tmp_path / "out"):
        pytest.fail("the body ran")
    assert caught.value.filename == str(tmp_path / "out")


def test_errors_about_the_temporary_file_name_the_target(tmp_path):
    target = tmp_path / "out.csv"
    with pytest.raises(OSError) as caught, atomic_path(target) as tmp:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(target)
    with pytest.raises(OSError) as caught, atomic_path(target):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # a write: no file name
    assert caught.value.filename == str(target)
    assert os.listdir(tmp_path) == []  # nothing half-written left


def test_an_existing_file_is_replaced_by_a_directory_only_with_overwrite(tmp_path):
    (tmp_path / "hf").write_text("old")
    with pytest.raises(FileExistsError), atomic_directory(tmp_path / "hf"):
        pass
    with atomic_directory(tmp_path / "hf", overwrite=True) as tmp:
        (tmp / "a").write_text("new")
    assert (tmp_path / "hf" / "a").read_text() == "new"


def test_a_failed_write_reported_as_rust_text_is_an_os_error_naming_the_target(tmp_path):
    """safetensors reports a full disk as "... (os error 28)", not as an OSError."""
    target = tmp_path / "model.safetensors"
    with pytest.raises(OSError) as caught, atomic_path(target):
        raise RuntimeError("Error while serializing: I/O error: No space left on device "
                           "(os error 28)")
    assert (caught.value.errno, caught.value.filename) == (errno.ENOSPC, str(target))
    with pytest.raises(ValueError), atomic_path(target):
        raise ValueError("anything else goes through unchanged")
