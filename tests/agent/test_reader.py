"""Reading one file safely: every bad input is one clear error with a stable code."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import safeio
from agent.reader import read_file
from agent.records import ERROR_CODES, ReadLimits
from tests.agent.scan_fixtures import write
from tests.certfactory import make_cert

ONE_SHOT = ReadLimits()
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def cert_pem() -> bytes:
    return make_cert(sans=("reader.example",)).pem


def test_reads_a_plain_pem_file_and_records_its_identity(tmp_path: Path, cert_pem: bytes) -> None:
    path = write(tmp_path / "cert.pem", cert_pem)
    result = read_file(path, limits=ONE_SHOT)
    assert result.error is None
    assert [c.facts.sans for c in result.certificates] == [("reader.example",)]
    st = path.stat()
    assert result.stat == (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def test_missing_file_is_not_found(tmp_path: Path) -> None:
    result = read_file(tmp_path / "nope.pem", limits=ONE_SHOT)
    assert result.error is not None
    assert result.error.code == "not-found"
    assert result.error.path == str(tmp_path / "nope.pem")


def test_dangling_link_is_not_found_and_says_so(tmp_path: Path) -> None:
    os.symlink(tmp_path / "gone.pem", tmp_path / "cert.pem")
    result = read_file(tmp_path / "cert.pem", limits=ONE_SHOT)
    assert result.error is not None
    assert result.error.code == "not-found"
    assert "dangling" in result.error.message


def test_dangling_link_inside_a_store_root_is_not_found(tmp_path: Path) -> None:
    os.symlink("gone.pem", tmp_path / "cert.pem")
    result = read_file(tmp_path / "cert.pem", limits=ReadLimits(root=tmp_path))
    assert result.error is not None
    assert (result.error.code, "dangling" in result.error.message) == ("not-found", True)


@pytest.mark.parametrize("limits", [ONE_SHOT, None], ids=["one-shot", "store-root"])
def test_symlink_loop_is_an_error_not_a_hang(tmp_path: Path, limits: ReadLimits | None) -> None:
    os.symlink("b.pem", tmp_path / "a.pem")
    os.symlink("a.pem", tmp_path / "b.pem")
    result = read_file(tmp_path / "a.pem", limits=limits or ReadLimits(root=tmp_path))
    assert result.error is not None
    assert result.error.code == "symlink-loop"


@pytest.mark.parametrize("limits", [ONE_SHOT, None], ids=["one-shot", "store-root"])
def test_fifo_is_refused_without_blocking(tmp_path: Path, limits: ReadLimits | None) -> None:
    fifo = tmp_path / "cert.pem"
    os.mkfifo(fifo)
    outcome: list[object] = []
    worker = threading.Thread(
        target=lambda: outcome.append(
            read_file(fifo, limits=limits or ReadLimits(root=tmp_path))),
        daemon=True,
    )
    worker.start()
    worker.join(timeout=5)
    if worker.is_alive():  # pragma: no cover - the failure this test exists for
        with open(fifo, "wb"):  # unblock the reader so the test process can exit
            pass
        pytest.fail("reading a FIFO blocked")
    result = outcome[0]
    assert result.error is not None  # type: ignore[attr-defined]
    assert result.error.code == "fifo"  # type: ignore[attr-defined]


def test_directory_is_not_a_regular_file(tmp_path: Path) -> None:
    result = read_file(tmp_path, limits=ONE_SHOT)
    assert result.error is not None
    assert result.error.code == "not-regular-file"


def test_device_is_not_a_regular_file_and_is_never_opened() -> None:
    result = read_file(Path("/dev/zero"), limits=ONE_SHOT)  # would never end if read
    assert result.error is not None
    assert (result.error.code, result.error.message) == ("not-regular-file",
                                                         "is a device, not a file")


def test_file_over_the_size_cap_is_too_large_and_never_read(
    tmp_path: Path, cert_pem: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "big.pem", cert_pem + b"\n" * 5000)
    reads: list[int] = []
    monkeypatch.setattr(safeio, "_read", lambda fd, n: reads.append(n) or os.read(fd, n))
    result = read_file(path, limits=ReadLimits(max_size=len(cert_pem)))
    assert result.error is not None
    assert result.error.code == "too-large"
    assert str(len(cert_pem)) in result.error.message
    assert reads == []


def test_file_of_exactly_the_size_cap_is_read(tmp_path: Path, cert_pem: bytes) -> None:
    path = write(tmp_path / "cert.pem", cert_pem)
    result = read_file(path, limits=ReadLimits(max_size=len(cert_pem)))
    assert result.error is None
    assert len(result.certificates) == 1


def test_file_vanishing_mid_read_is_vanished(
    tmp_path: Path, cert_pem: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "cert.pem", cert_pem)

    def read_then_unlink(fd: int, size: int) -> bytes:
        if path.exists():
            path.unlink()  # certbot's unlink, in the middle of our read
        return os.read(fd, size)

    monkeypatch.setattr(safeio, "_read", read_then_unlink)
    result = read_file(path, limits=ONE_SHOT)
    assert result.error is not None
    assert result.error.code == "vanished"


def test_file_replaced_by_rename_mid_read_is_vanished(
    tmp_path: Path, cert_pem: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "cert.pem", cert_pem)
    write(tmp_path / "new.pem", make_cert(sans=("new.example",)).pem)

    def read_then_replace(fd: int, size: int) -> bytes:
        if (tmp_path / "new.pem").exists():
            os.replace(tmp_path / "new.pem", path)
        return os.read(fd, size)

    monkeypatch.setattr(safeio, "_read", read_then_replace)
    result = read_file(path, limits=ReadLimits(root=tmp_path))
    assert result.error is not None
    assert result.error.code == "vanished"


@pytest.fixture
def world_traversable_dir() -> Iterator[Path]:
    """pytest's tmp dirs are 0700 root; the unprivileged reader needs to reach the file."""
    directory = Path(tempfile.mkdtemp(prefix="certescrow-perm-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory)


def _read_as_nobody(path: Path) -> dict[str, str]:
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from agent.reader import read_file\n"
        "from agent.records import ReadLimits\n"
        "r = read_file(Path(sys.argv[1]), limits=ReadLimits())\n"
        "print(json.dumps({'code': r.error.code if r.error else '',"
        " 'message': r.error.message if r.error else ''}))\n"
    )
    if os.geteuid() == 0:
        argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                sys.executable, "-c", code, str(path)]
    else:
        argv = [sys.executable, "-c", code, str(path)]
    done = subprocess.run(argv, capture_output=True, text=True, check=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)
    return json.loads(done.stdout)  # type: ignore[no-any-return]


@pytest.mark.skipif(os.geteuid() == 0 and shutil.which("setpriv") is None,
                    reason="running as root (reads everything) and setpriv is missing to drop "
                           "privileges")
def test_unreadable_file_is_permission_denied(world_traversable_dir: Path,
                                              cert_pem: bytes) -> None:
    # Root reads a 0000 file anyway, so the read runs in a process without root's privileges.
    path = write(world_traversable_dir / "cert.pem", cert_pem, mode=0o000)
    got = _read_as_nobody(path)
    assert got["code"] == "permission-denied"


# ------------------------------------------------------------------ link policy (certbot)

@pytest.fixture
def certbot(tmp_path: Path) -> Path:
    """``live/x/cert.pem -> ../../archive/x/cert1.pem``, as certbot lays it out."""
    write(tmp_path / "archive" / "x" / "cert1.pem", make_cert(sans=("x.example",)).pem)
    (tmp_path / "live" / "x").mkdir(parents=True)
    os.symlink("../../archive/x/cert1.pem", tmp_path / "live" / "x" / "cert.pem")
    return tmp_path


def test_one_shot_scan_follows_certbot_links(certbot: Path) -> None:
    result = read_file(certbot / "live" / "x" / "cert.pem", limits=ONE_SHOT)
    assert result.error is None
    assert result.certificates[0].facts.sans == ("x.example",)
    assert result.certificates[0].path == str(certbot / "live" / "x" / "cert.pem")


def test_store_root_follows_certbot_links_into_an_allowed_root(certbot: Path) -> None:
    limits = ReadLimits(root=certbot / "live", allowed_roots=(certbot / "archive",))
    result = read_file(certbot / "live" / "x" / "cert.pem", limits=limits)
    assert result.error is None
    assert result.certificates[0].facts.sans == ("x.example",)


def test_store_root_refuses_links_out_of_its_roots(certbot: Path) -> None:
    result = read_file(certbot / "live" / "x" / "cert.pem",
                       limits=ReadLimits(root=certbot / "live"))
    assert result.error is not None
    assert result.error.code == "link-outside-root"
    assert str(certbot / "archive" / "x" / "cert1.pem") in result.error.message


def test_store_root_refuses_an_absolute_link_to_a_secret(tmp_path: Path) -> None:
    secret = write(tmp_path / "elsewhere" / "shadow", make_cert().pem)
    (tmp_path / "store").mkdir()
    os.symlink(secret, tmp_path / "store" / "cert.pem")
    result = read_file(tmp_path / "store" / "cert.pem", limits=ReadLimits(root=tmp_path / "store"))
    assert result.error is not None
    assert result.error.code == "link-outside-root"


def test_store_root_refuses_a_link_through_a_linked_directory(tmp_path: Path) -> None:
    write(tmp_path / "elsewhere" / "cert.pem", make_cert().pem)
    (tmp_path / "store").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "store" / "dir")
    result = read_file(tmp_path / "store" / "dir" / "cert.pem",
                       limits=ReadLimits(root=tmp_path / "store"))
    assert result.error is not None
    assert result.error.code == "link-outside-root"


def test_store_root_follows_a_linked_directory_inside_it_and_names_the_real_path(
        tmp_path: Path, cert_pem: bytes) -> None:
    """A directory component that is a link (the walk opens each directory without following
    links, and looks again at one it could not open) is followed when it stays in the store,
    and the certificate is named by its real path; a file where a directory should be is an
    error in words."""
    store = tmp_path / "store"
    write(store / "archive" / "x" / "cert.pem", cert_pem)
    os.symlink("archive/x", store / "live")
    result = read_file(store / "live" / "cert.pem", limits=ReadLimits(root=store))
    assert result.error is None
    assert [r.facts.sha256 for r in result.certificates]
    from agent.safeio import read_bytes

    read = read_bytes(store / "live" / "cert.pem", limits=ReadLimits(root=store))
    assert read.real_path == str((store / "archive" / "x" / "cert.pem").resolve())
    write(store / "plain", b"not a directory")
    wrong = read_file(store / "plain" / "cert.pem", limits=ReadLimits(root=store))
    assert wrong.error is not None
    assert wrong.error.code == "not-found"
    assert "not a directory" in wrong.error.message


def test_store_root_reads_through_a_link_nothing_it_would_refuse_directly(
    tmp_path: Path,
) -> None:
    (tmp_path / "store").mkdir()
    os.mkfifo(tmp_path / "store" / "pipe")
    os.symlink("pipe", tmp_path / "store" / "cert.pem")
    result = read_file(tmp_path / "store" / "cert.pem", limits=ReadLimits(root=tmp_path / "store"))
    assert result.error is not None
    assert result.error.code == "fifo"


def test_store_root_that_is_itself_a_link_is_resolved(tmp_path: Path, cert_pem: bytes) -> None:
    write(tmp_path / "real" / "cert.pem", cert_pem)
    os.symlink(tmp_path / "real", tmp_path / "alias")
    result = read_file(tmp_path / "alias" / "cert.pem", limits=ReadLimits(root=tmp_path / "alias"))
    assert result.error is None


def test_store_root_swapped_for_a_link_after_a_read_is_refused(tmp_path: Path) -> None:
    # The walk starts at the store root once the root is known; a root later replaced by a link
    # to another tree must not turn that tree into the store.
    store = tmp_path / "store"
    limits = ReadLimits(root=store)
    write(store / "cert.pem", make_cert().pem)
    assert read_file(store / "cert.pem", limits=limits).error is None
    write(tmp_path / "elsewhere" / "cert.pem", make_cert(sans=("secret.example",)).pem)
    store.rename(tmp_path / "store.old")
    os.symlink(tmp_path / "elsewhere", store)
    for _ in range(2):  # the first read after the swap, and the next
        result = read_file(store / "cert.pem", limits=limits)
        assert result.error is not None
        assert result.error.code == "link-outside-root"
        assert not result.certificates


def test_store_root_recreated_between_reads_is_read_afresh(tmp_path: Path) -> None:
    store = tmp_path / "store"
    limits = ReadLimits(root=store)
    write(store / "cert.pem", make_cert(sans=("before.example",)).pem)
    assert read_file(store / "cert.pem", limits=limits).certificates[0].facts.sans == (
        "before.example",)
    shutil.rmtree(store)
    write(store / "cert.pem", make_cert(sans=("after.example",)).pem)
    for _ in range(2):
        result = read_file(store / "cert.pem", limits=limits)
        assert [c.facts.sans for c in result.certificates] == [("after.example",)]


def test_every_error_code_is_documented() -> None:
    doc = (REPO / "docs" / "agent.md").read_text(encoding="utf-8")
    for code in ERROR_CODES:
        assert f"`{code}`" in doc, code


def test_unix_socket_is_not_a_regular_file(tmp_path: Path) -> None:
    import socket

    path = tmp_path / "s.pem"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        result = read_file(path, limits=ReadLimits(root=tmp_path))
    assert result.error is not None
    assert (result.error.code, result.error.message) == ("not-regular-file",
                                                         "is a socket, not a file")


def test_file_growing_past_the_cap_while_read_is_too_large(
    tmp_path: Path, cert_pem: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "cert.pem", cert_pem)

    def read_then_grow(fd: int, size: int) -> bytes:
        with open(path, "ab") as fh:  # a writer appends while we read
            fh.write(b"\n" * 4096)
        return os.read(fd, size)

    monkeypatch.setattr(safeio, "_read", read_then_grow)
    result = read_file(path, limits=ReadLimits(max_size=len(cert_pem) + 100))
    assert result.error is not None
    assert result.error.code == "too-large"
