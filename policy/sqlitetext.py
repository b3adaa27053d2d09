"""What SQLite said, in our words.

sqlite3's messages are the library's, and some quote what the file holds ("Could not decode
to UTF-8 column 'payload' with text '…'" repeats stored bytes, which may be whoever made a
certificate's): a ledger error never shows them. The common failures get a sentence of ours;
anything else is named by SQLite's error name only (``SQLITE_IOERR_SHORT_READ``)."""

from __future__ import annotations

__all__ = ["sqlite_reason"]

_KNOWN = (
    ("decode to UTF-8", "a stored text value is not valid UTF-8 (the file was altered)"),
    ("database is locked", "it is locked by another process"),
    ("database table is locked", "it is locked by another process"),
    ("unable to open database file",
     "it cannot be opened (its directory is missing, or not accessible to this user)"),
    ("attempt to write a readonly database",
     "it cannot be written here (the file, or its directory, is read-only for this user)"),
    ("database or disk is full", "the disk is full"),
    ("disk I/O error", "a disk I/O error"),
    ("file is not a database", "it is not an SQLite database"),
    ("database disk image is malformed", "it is damaged (a malformed database image)"),
    ("no such table", "its schema is not one this certescrow knows (a table is missing)"),
    ("no such column", "its schema is not one this certescrow knows (a column is missing)"),
    ("has no column", "its schema is not one this certescrow knows (a column is missing)"),
)


def sqlite_reason(exc: BaseException) -> str:
    """Why an SQLite operation failed, for a message: never the library's text itself."""
    text = str(exc)
    for needle, reason in _KNOWN:
        if needle in text:
            return reason
    name = getattr(exc, "sqlite_errorname", None)
    return f"an SQLite error ({name if isinstance(name, str) else type(exc).__name__})"
