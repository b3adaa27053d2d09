"""The one reader of small files whose path someone else chose (``untrusted.smallfile``): the
policy's catalogue and schedule and the vault's key, password and configuration files."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from policy.datafile import DataFileError, read_data_file
from untrusted.smallfile import SmallFileError, read_small_file
from vault.secretfile import SecretFileError, read_secret_file


def _problem(path: Path, *, follow_symlinks: bool = True) -> SmallFileError:
    with pytest.raises(SmallFileError) as caught:
        read_small_file(path, max_bytes=100, follow_symlinks=follow_symlinks)
    return caught.value


def test_reads_a_regular_file_up_to_its_cap_and_not_a_byte_over(tmp_path: Path) -> None:
    at_cap, over = tmp_path / "at-cap", tmp_path / "over"
    at_cap.write_bytes(b"x" * 100)
    over.write_bytes(b"x" * 101)
    assert read_small_file(at_cap, max_bytes=100) == b"x" * 100
    error = _problem(over)
    assert (error.problem, error.size) == ("too-large", 101)


def test_a_fifo_is_refused_at_once_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    done: list[SmallFileError] = []
    reader = threading.Thread(target=lambda: done.append(_problem(fifo)), daemon=True)
    reader.start()
    reader.join(10)
    assert done, "read_small_file blocked on a FIFO with no writer"
    assert done[0].problem == "not-regular"
    assert stat.S_ISFIFO(done[0].mode)


def test_a_device_and_a_directory_are_not_regular_files(tmp_path: Path) -> None:
    device, directory = _problem(Path("/dev/zero")), _problem(tmp_path)
    assert device.problem == directory.problem == "not-regular"
    assert stat.S_ISCHR(device.mode)
    assert stat.S_ISDIR(directory.mode)


def test_missing_and_a_refused_link(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"secret")
    link = tmp_path / "link"
    link.symlink_to(target)
    assert _problem(tmp_path / "nothing").problem == "missing"
    assert _problem(link, follow_symlinks=False).problem == "link"
    assert read_small_file(link, max_bytes=100) == b"secret"


def test_the_check_sees_the_opened_file_before_a_byte_is_read(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    seen: list[os.stat_result] = []

    class RefusedError(Exception):
        pass

    def refuse(st: os.stat_result) -> None:
        seen.append(st)
        raise RefusedError

    with pytest.raises(RefusedError):
        read_small_file(path, max_bytes=100, check=refuse)
    assert seen[0].st_ino == path.stat().st_ino
    assert seen[0].st_size == 3


def test_each_caller_says_it_in_its_own_words(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(DataFileError, match=r"^is not a regular file \(a FIFO"):
        read_data_file(fifo, max_bytes=100)
    with pytest.raises(DataFileError, match=r"^is a directory, expected a TOML file$"):
        read_data_file(tmp_path, max_bytes=100)
    with pytest.raises(SecretFileError, match=r"is a FIFO \(named pipe\); it must be a regular"):
        read_secret_file(fifo, what="key file")
    big = tmp_path / "big"
    big.write_bytes(b"x" * 5000)
    with pytest.raises(DataFileError, match=r"^is 5000 bytes, over the 4096-byte limit$"):
        read_data_file(big, max_bytes=4096)
    with pytest.raises(SecretFileError, match=r"too large \(5000 bytes; at most 4096\)") as err:
        read_secret_file(big, what="key file")
    assert err.value.problem == "too-large"
