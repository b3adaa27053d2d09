"""Docs that run (issue 11): every ``certescrow`` command in the shell blocks of README.md and
docs/*.md is run as written, in a temporary HOME, against stores this test builds.

How an example is read:

* a fenced block marked ``sh``, ``bash``, ``shell`` or ``console`` holds examples; a plain block
  holds a synopsis or output, and only its ``--options`` are checked against ``--help``;
* lines ending in ``\\`` continue; ``#`` starts a comment; ``export NAME=VALUE`` sets the
  environment of the commands after it in the same file; ``&&``, ``;`` and ``|`` separate
  commands, and only the ``certescrow`` ones (also ``.venv/bin/certescrow``,
  ``/usr/local/bin/certescrow``) run; ``> FILE`` receives the output;
* absolute paths under ``/etc``, ``/var``, ``/srv``, ``/root`` and ``/opt`` are taken inside the
  test's own root (``/etc/letsencrypt/live`` is a real certbot store built here), ``~`` is the
  test's HOME; the placeholder ``ID`` is the first entry of the last ``vault list --json``;
* an example whose comment carries a marker in brackets is skipped by that name:
  ``[needs a live host]`` (``www.example.jp:443`` is not there) and ``[runs until stopped]`` (a
  daemon or a server).

"Runs as written" means: no traceback, no usage error (unknown command or option, missing
argument), and an exit status the documentation gives for it: 0, or 1 (a file could not be
read), or 0-3 with ``--exit-status``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.agent.certbot_store import certbot_store, commercial_store
from tests.certfactory import make_cert

REPO = Path(__file__).resolve().parents[1]
CERTESCROW = Path(sys.executable).with_name("certescrow")
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL_BLOCKS = {"sh", "bash", "shell", "console"}
SKIP_MARKERS = ("[needs a live host]", "[runs until stopped]")
MAPPED_ROOTS = ("/etc/", "/var/", "/srv/", "/root/", "/opt/")
NOW = "2026-11-25T12:00:00+09:00"
"""The examples' clock: after the README's contract dates (a record is never dated in the
future), inside the certificates' validity."""


@dataclass
class Example:
    doc: Path
    line: int
    text: str
    section: int
    """The line of the heading it is under: each section is a scenario of its own."""
    skipped: str | None = None


@dataclass
class Block:
    doc: Path
    line: int
    lang: str
    section: int
    lines: list[tuple[int, str]] = field(default_factory=list)


def blocks(doc: Path) -> Iterator[Block]:
    current: Block | None = None
    section = 0
    for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
        if current is None and line.startswith("#"):
            section = number
        fence = re.match(r"^\s*```(\w*)\s*$", line)
        if fence is not None:
            if current is None:
                current = Block(doc=doc, line=number, lang=fence.group(1), section=section)
            else:
                yield current
                current = None
            continue
        if current is not None:
            current.lines.append((number, line))


def examples(doc: Path) -> Iterator[Example]:
    """The logical lines of the shell blocks of ``doc`` (continuations joined)."""
    for block in blocks(doc):
        if block.lang not in SHELL_BLOCKS:
            continue
        pending = ""
        start = 0
        for number, line in block.lines:
            if not pending:
                start = number
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            text = (pending + line).strip()
            pending = ""
            if not text or text.startswith("#"):
                continue
            marker = next((m for m in SKIP_MARKERS if m in text), None)
            yield Example(doc=doc, line=start, text=text, section=block.section,
                          skipped=marker)


def _is_certescrow(word: str) -> bool:
    return word == "certescrow" or word.endswith("/certescrow")


def commands(text: str) -> Iterator[list[str]]:
    """The command segments of one line (separated by ``&&``, ``||``, ``;``, ``|``)."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    segment: list[str] = []
    for token in lexer:
        if token in ("&&", "||", ";", "|", "&"):
            if segment:
                yield segment
            segment = []
        else:
            segment.append(token)
    if segment:
        yield segment


class Sandbox:
    """A HOME, a working directory and a root with the stores the examples name."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.home = base / "home"
        self.work = base / "work"
        self.root = base / "root"
        for path in (self.home, self.work, self.root / "etc"):
            path.mkdir(parents=True)
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("CERTESCROW_", "XDG_"))}
        self.env.update(HOME=str(self.home), CERTESCROW_TESTONLY_NOW=NOW, COLUMNS="100",
                        # a server: no OS keyring, the vault's key in a file (README, "The vault")
                        CERTESCROW_VAULT_KEY_FILE=str(self.home / ".config" / "certescrow" /
                                                      "vault.key"))
        self.last_list: list[dict[str, object]] = []
        self._build()

    def _build(self) -> None:
        at = datetime(2026, 4, 1, 3, 0, tzinfo=UTC)
        certbot_store(self.root / "etc")  # /etc/letsencrypt/{live,archive}
        commercial_store(self.root / "etc")  # /etc/nginx/ssl
        private = self.root / "etc" / "ssl" / "private"
        private.mkdir(parents=True)
        issued = make_cert(not_before=at, lifetime=timedelta(days=365),
                           sans=("www.example.jp",))
        (private / "www.example.jp.pem").write_bytes(issued.pem)
        (private / "www.example.jp.key").write_bytes(issued.key_pem())
        (private / "www.example.jp.key").chmod(0o600)
        (self.work / "cert.pem").write_bytes(issued.pem)
        (self.work / "server.crt").write_bytes(issued.pem)
        (self.work / "server.key").write_bytes(issued.key_pem())
        (self.work / "server.key").chmod(0o600)
        (self.work / "ca-documents.pdf").write_bytes(b"%PDF-1.4\n% CA documents\n%%EOF\n")
        (self.work / "certs").mkdir()
        (self.work / "certs" / "site.pem").write_bytes(issued.pem)
        config_dir = self.root / "etc" / "certescrow"
        config_dir.mkdir()
        (config_dir / "config.toml").write_text(
            f'[policy]\nledger = "{self.home}/ledger.sqlite3"\n'
            f'[[agent.stores]]\npath = "{self.root}/etc/letsencrypt/live"\n', encoding="utf-8")
        (self.root / "var" / "lib" / "node_exporter" / "textfile").mkdir(parents=True)

    def map(self, word: str) -> str:
        if word.startswith("~/"):
            return str(self.home / word[2:])
        if word.startswith(MAPPED_ROOTS):
            return str(self.root) + word
        for prefix in MAPPED_ROOTS:  # --option=/etc/...
            if f"={prefix}" in word:
                name, _, value = word.partition("=")
                return f"{name}={self.map(value)}"
        return word

    def run(self, example: Example) -> list[str]:
        """Run the certescrow commands of ``example``; the problems found (none: it ran)."""
        problems: list[str] = []
        for segment in commands(example.text):
            if segment[0] == "export" and len(segment) == 2 and "=" in segment[1]:
                name, _, value = segment[1].partition("=")
                self.env[name] = self.map(value)
                continue
            if not _is_certescrow(segment[0]):
                continue
            problems.extend(self._run_one(segment))
        return problems

    def _run_one(self, segment: list[str]) -> list[str]:
        args: list[str] = []
        out_file: Path | None = None
        words = iter(segment[1:])
        for word in words:
            if word == ">":
                out_file = self.work / self.map(next(words))  # an absolute path stays one
                continue
            args.append(self.map(word))
        if "ID" in args and self.last_list:
            args[args.index("ID")] = str(self.last_list[0]["id"])
        done = subprocess.run([str(CERTESCROW), *args], capture_output=True, text=True,
                              env=self.env, cwd=self.work, timeout=60, check=False)
        if out_file is not None and out_file != self.work / self.map("/dev/null"):
            out_file.parent.mkdir(parents=True, exist_ok=True)
            out_file.write_text(done.stdout, encoding="utf-8")
        if args[:2] == ["vault", "list"] and "--json" in args and done.returncode == 0:
            self.last_list = json.loads(done.stdout)
        allowed = {0, 1, 2, 3} if any(a.startswith("--exit-status") for a in args) else {0, 1}
        problems = []
        if "Traceback" in done.stderr:
            problems.append("a traceback")
        if re.search(r"Usage: |No such (command|option)|Missing argument|Got unexpected",
                     done.stderr):
            problems.append("a usage error")
        if done.returncode not in allowed:
            problems.append(f"exit {done.returncode}")
        if problems:
            shown = " ".join(shlex.quote(a) for a in args)
            return [f"certescrow {shown}: {', '.join(problems)}: {done.stderr.strip()[-400:]}"]
        return []


def _id(example: Example) -> str:
    return f"{example.doc.name}:{example.line}"


ALL = [e for doc in DOCS for e in examples(doc)]


def test_the_documentation_has_examples_and_the_live_host_one_is_marked() -> None:
    texts = [e.text for e in ALL]
    assert any("certescrow scan" in t for t in texts)
    live = [e for e in ALL if "www.example.jp:443" in e.text]
    assert live
    assert all(e.skipped == "[needs a live host]" for e in live)


@pytest.mark.slow
@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_every_command_example_runs_as_written(tmp_path: Path, doc: Path) -> None:
    """Each section of a document (a heading and what is under it) is one scenario, run in
    order in a sandbox of its own: the vault section's `vault init` starts from nothing."""
    sandboxes: dict[int, Sandbox] = {}
    problems: list[str] = []
    ran = 0
    for example in examples(doc):
        if example.skipped is not None:
            continue
        if example.section not in sandboxes:
            sandboxes[example.section] = Sandbox(tmp_path / f"section-{example.section}")
        found = sandboxes[example.section].run(example)
        ran += 1
        problems.extend(f"{_id(example)}: {p}" for p in found)
    assert not problems, "\n".join(problems)
    if doc.name == "README.md":
        assert ran >= 20


def _synopses() -> Iterator[tuple[str, list[str], list[str]]]:
    """``(where, command words, --options)`` of every synopsis line in a plain block."""
    for doc in DOCS:
        for block in blocks(doc):
            if block.lang:
                continue
            for number, line in block.lines:
                text = line.strip()
                if not text.startswith("certescrow "):
                    continue
                words = re.findall(r"^certescrow((?: [a-z][a-z0-9-]*)+)", text)
                if not words:
                    continue
                options = sorted(set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", text)))
                yield f"{doc.name}:{number}", words[0].split(), options


@pytest.mark.parametrize(("where", "words", "options"), list(_synopses()),
                         ids=[s[0] for s in _synopses()])
def test_every_synopsis_names_options_the_command_has(where: str, words: list[str],
                                                      options: list[str]) -> None:
    from click.testing import CliRunner

    from agent.main import certescrow

    # the command is the longest prefix of the words that --help accepts
    for end in range(len(words), 0, -1):
        result = CliRunner().invoke(certescrow, [*words[:end], "--help"])
        if result.exit_code == 0:
            break
    else:
        pytest.fail(f"{where}: no such command: certescrow {' '.join(words)}")
    missing = [o for o in options if o not in result.output]
    assert not missing, f"{where}: certescrow {' '.join(words[:end])} has no {missing}"
