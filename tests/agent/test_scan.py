"""Walking stores: every file accounted for, links followed by policy, loops never walked."""

from __future__ import annotations

import os
from pathlib import Path

from agent.records import FileError, ReadLimits
from agent.scan import iter_store_files, scan_paths
from tests.agent.scan_fixtures import write
from tests.certfactory import make_cert

ONE_SHOT = ReadLimits()


def _certbot(tmp_path: Path) -> Path:
    issued = make_cert(sans=("x.example",))
    write(tmp_path / "archive" / "x" / "cert1.pem", issued.pem)
    write(tmp_path / "archive" / "x" / "privkey1.pem", issued.key_pem(), 0o600)
    (tmp_path / "live" / "x").mkdir(parents=True)
    os.symlink("../../archive/x/cert1.pem", tmp_path / "live" / "x" / "cert.pem")
    os.symlink("../../archive/x/privkey1.pem", tmp_path / "live" / "x" / "privkey.pem")
    write(tmp_path / "live" / "README", b"This directory contains your keys and certificates.\n")
    return tmp_path


def test_every_file_is_accounted_for(tmp_path: Path) -> None:
    write(tmp_path / "a.pem", make_cert(sans=("a.example",)).pem)
    write(tmp_path / "sub" / "b.der", make_cert(sans=("b.example",)).der)
    write(tmp_path / "sub" / "junk.bin", b"\x01\x02\x03")
    write(tmp_path / "sub" / "empty.pem", b"")
    os.mkfifo(tmp_path / "sub" / "pipe")
    os.symlink("nowhere", tmp_path / "dangling.pem")
    results = scan_paths([tmp_path], limits=ONE_SHOT)
    summary = {Path(r.path).name: (r.error.code if r.error else
                                   f"skipped: {r.skipped.code}" if r.skipped else
                                   len(r.certificates))
               for r in results}
    assert summary == {"a.pem": 1, "b.der": 1, "junk.bin": "skipped: not-certificate-material",
                       "empty.pem": "empty", "pipe": "fifo", "dangling.pem": "not-found"}


def test_walk_is_sorted_and_depth_first(tmp_path: Path) -> None:
    for name in ("b/2.pem", "a/1.pem", "c.pem", "a/z/3.pem"):
        write(tmp_path / name, b"x")
    got = [p.relative_to(tmp_path).as_posix() for p in iter_store_files(tmp_path, limits=ONE_SHOT)
           if isinstance(p, Path)]
    assert got == ["c.pem", "a/1.pem", "a/z/3.pem", "b/2.pem"]


def test_directory_link_loop_is_reported_once_and_not_walked(tmp_path: Path) -> None:
    write(tmp_path / "store" / "a.pem", make_cert().pem)
    os.symlink("..", tmp_path / "store" / "up")
    os.symlink(".", tmp_path / "store" / "self")
    items = list(iter_store_files(tmp_path / "store", limits=ONE_SHOT))
    errors = sorted((Path(i.path).relative_to(tmp_path / "store").as_posix(), i.code)
                    for i in items if isinstance(i, FileError))
    files = [i for i in items if isinstance(i, Path)]
    # "up" leads to tmp_path, which is not an ancestor of the walk's root: it is walked, and
    # the store is met again under it, where its own "up" and "self" are loops.
    assert errors == [("self", "symlink-loop"), ("up/store/self", "symlink-loop"),
                      ("up/store/up", "symlink-loop")]
    assert files.count(tmp_path / "store" / "a.pem") == 1
    assert tmp_path / "store" / "up" / "store" / "a.pem" in files


def test_mutual_directory_links_terminate(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    os.symlink("../b", tmp_path / "a" / "to-b")
    os.symlink("../a", tmp_path / "b" / "to-a")
    items = list(iter_store_files(tmp_path, limits=ONE_SHOT))
    assert items
    assert all(isinstance(i, FileError) and i.code == "symlink-loop" for i in items)


def test_certbot_layout_one_shot_follows_links(tmp_path: Path) -> None:
    root = _certbot(tmp_path)
    results = {Path(r.path).name: r for r in scan_paths([root / "live"], limits=ONE_SHOT)}
    assert results["cert.pem"].certificates[0].facts.sans == ("x.example",)
    assert results["privkey.pem"].keys[0].spki_sha256 == \
        results["cert.pem"].certificates[0].spki_sha256
    # certbot's live/README is accounted for as skipped (info), not an error (issue 11)
    assert results["README"].error is None
    assert results["README"].skipped is not None
    assert results["README"].skipped.code == "not-certificate-material"


def test_certbot_layout_store_root_with_archive_allowed(tmp_path: Path) -> None:
    root = _certbot(tmp_path)
    limits = ReadLimits(root=root / "live", allowed_roots=(root / "archive",))
    results = {Path(r.path).name: r for r in scan_paths([root / "live"], limits=limits)}
    assert results["cert.pem"].error is None
    assert len(results["cert.pem"].certificates) == 1


def test_certbot_layout_store_root_without_allowed_root(tmp_path: Path) -> None:
    root = _certbot(tmp_path)
    results = {Path(r.path).name: r for r in scan_paths([root / "live"],
                                                        limits=ReadLimits(root=root / "live"))}
    for name in ("cert.pem", "privkey.pem"):
        error = results[name].error
        assert error is not None
        assert error.code == "link-outside-root"


def test_directory_link_outside_the_store_root_is_an_error_not_a_skip(tmp_path: Path) -> None:
    write(tmp_path / "elsewhere" / "c.pem", make_cert().pem)
    (tmp_path / "store").mkdir()
    os.symlink("../elsewhere", tmp_path / "store" / "linked")
    items = list(iter_store_files(tmp_path / "store", limits=ReadLimits(root=tmp_path / "store")))
    assert len(items) == 1
    assert isinstance(items[0], FileError)
    assert items[0].code == "link-outside-root"


def test_same_certificate_via_two_paths_is_reported_per_path_with_one_sha256(
    tmp_path: Path,
) -> None:
    issued = make_cert(sans=("twice.example",))
    write(tmp_path / "store" / "real" / "cert.pem", issued.pem)
    os.symlink("real", tmp_path / "store" / "alias")
    os.symlink("real/cert.pem", tmp_path / "store" / "cert-link.pem")
    results = scan_paths([tmp_path / "store"], limits=ONE_SHOT)
    rows = sorted((r.path, r.certificates[0].facts.sha256) for r in results)
    base = str(tmp_path / "store")
    assert rows == sorted([
        (f"{base}/alias/cert.pem", issued.sha256),
        (f"{base}/cert-link.pem", issued.sha256),
        (f"{base}/real/cert.pem", issued.sha256),
    ])


def test_files_and_directories_mix_and_a_missing_argument_is_accounted_for(
    tmp_path: Path,
) -> None:
    one = write(tmp_path / "one.pem", make_cert().pem)
    write(tmp_path / "dir" / "two.pem", make_cert().pem)
    results = scan_paths([one, tmp_path / "dir", tmp_path / "missing.pem"], limits=ONE_SHOT)
    assert [(Path(r.path).name, r.error.code if r.error else "ok") for r in results] == [
        ("one.pem", "ok"), ("two.pem", "ok"), ("missing.pem", "not-found")]


def test_progress_reports_every_file(tmp_path: Path) -> None:
    for i in range(5):
        write(tmp_path / f"{i}.pem", make_cert().pem)
    calls: list[tuple[int, int]] = []
    scan_paths([tmp_path], limits=ONE_SHOT,
               progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]


def test_unlistable_directory_is_permission_denied(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "locked").mkdir()
    real_scandir = os.scandir

    def scandir(path):  # type: ignore[no-untyped-def]
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    items = list(iter_store_files(tmp_path, limits=ONE_SHOT))
    assert len(items) == 1
    assert isinstance(items[0], FileError)
    assert (items[0].code, items[0].path) == ("permission-denied", str(tmp_path / "locked"))
