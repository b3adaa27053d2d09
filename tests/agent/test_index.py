"""The index: a file is read again exactly when what its path names has changed."""

from __future__ import annotations

import os
from pathlib import Path

from agent.index import FileIndex, stat_key


def test_unchanged_file_is_recognised(tmp_path: Path) -> None:
    path = tmp_path / "a.pem"
    path.write_bytes(b"one")
    index: FileIndex[str] = FileIndex()
    index.put(path, stat_key(path), "result")
    assert index.unchanged(path, stat_key(path))
    assert index.get(path) == "result"


def test_rewrite_with_same_size_is_a_change(tmp_path: Path) -> None:
    path = tmp_path / "a.pem"
    path.write_bytes(b"one")
    index: FileIndex[str] = FileIndex()
    index.put(path, stat_key(path), "old")
    st = path.stat()
    path.write_bytes(b"two")  # same size, same inode
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert not index.unchanged(path, stat_key(path))


def test_rename_over_is_a_change_even_with_the_same_mtime(tmp_path: Path) -> None:
    path = tmp_path / "a.pem"
    path.write_bytes(b"one")
    index: FileIndex[str] = FileIndex()
    index.put(path, stat_key(path), "old")
    st = path.stat()
    new = tmp_path / ".a.tmp"
    new.write_bytes(b"two")
    os.utime(new, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(new, path)  # another inode now
    assert not index.unchanged(path, stat_key(path))


def test_symlink_retargeted_is_a_change(tmp_path: Path) -> None:
    (tmp_path / "cert1.pem").write_bytes(b"one")
    (tmp_path / "cert2.pem").write_bytes(b"one")
    link = tmp_path / "cert.pem"
    os.symlink("cert1.pem", link)
    index: FileIndex[str] = FileIndex()
    index.put(link, stat_key(link), "old", target=tmp_path / "cert1.pem")
    assert index.unchanged(link, stat_key(link))
    link.unlink()
    os.symlink("cert2.pem", link)  # certbot's renewal
    assert not index.unchanged(link, stat_key(link))


def test_missing_file_is_never_unchanged(tmp_path: Path) -> None:
    index: FileIndex[str] = FileIndex()
    index.put(tmp_path / "gone.pem", None, "x")
    assert stat_key(tmp_path / "gone.pem") is None
    assert not index.unchanged(tmp_path / "gone.pem", None)


def test_links_are_traced_back_from_their_target(tmp_path: Path) -> None:
    index: FileIndex[str] = FileIndex()
    index.put("/s/live/x/cert.pem", (1, 2, 3, 4), "r", target="/s/archive/x/cert1.pem")
    index.put("/s/live/x/fullchain.pem", (1, 3, 3, 4), "r",
              target="/s/archive/x/fullchain1.pem")
    assert index.linked_from("/s/archive/x/cert1.pem") == ("/s/live/x/cert.pem",)
    index.put("/s/live/x/cert.pem", (1, 9, 3, 4), "r", target="/s/archive/x/cert2.pem")
    assert index.linked_from("/s/archive/x/cert1.pem") == ()
    assert index.paths_under("/s/live/x") == ("/s/live/x/cert.pem", "/s/live/x/fullchain.pem")
    assert index.paths_under("/s/live") == ("/s/live/x/cert.pem", "/s/live/x/fullchain.pem")
    assert index.paths_under("/s/liv") == ()
    assert index.paths_under("/s/live/x/cert.pem") == ()
    index.remove("/s/live/x/cert.pem")
    assert index.linked_from("/s/archive/x/cert2.pem") == ()
    assert len(index) == 1
