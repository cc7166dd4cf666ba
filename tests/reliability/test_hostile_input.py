"""Hostile input: every name that reaches a path or a query is refused cleanly, and nothing escapes the sandbox.

Several hundred payloads (traversal, absolute paths, NUL and control characters, 10,000-character names, unicode
look-alikes, shell metacharacters, empty strings, Windows separators, URL-encoded traversal, SQL and markup) go
through every entry point where a name becomes a path or a database query: asset names, partition keys, pools and
external systems in definitions; ``--partition`` and ``ASSET@PARTITION`` of ``why``/``lineage``/``reproduce``;
snapshot, profile, alias, user and model names; run ids of ``show``/``logs``/``diff``; ``--set`` keys and values;
``-C`` and ``--project``; and the values of ``cairn.toml`` (artifacts path, database URL, pools,
circuit_breakers, profiles, modules). For each case (DESIGN §4, Security; §3, exit codes):

- no file or folder appears outside the project folders and the store: the whole tree around the sandbox is
  listed before and after, and the absolute places that payloads name are probed;
- a name is refused with exit code 2 and an error that says what is wrong, never a traceback;
- a ``--set`` value is a plain value: it runs (stored as the TOML literal it is, else the string) or is refused;
- a path in ``cairn.toml`` is the user's choice of a place: it is refused (exit 2), or the store is exactly
  there, or the run fails (exit 1) naming the place it could not write;
- everything stored before still loads (its objects keep their bytes).

The CLI runs in this process through `cairn.cli.main.main` (its real error handling and exit codes) with the
Typer app built once, so the default run stays fast: a stratified sample of payloads (`QUICK`) through every
entry point. The rest of the cross product, and a sweep through real `cairn` subprocesses in which every payload
crosses a process boundary once, are marked slow. The module prints a summary line at its end; run everything
with ``python -m pytest -q -m "slow or not slow" tests/reliability/test_hostile_input.py``.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.request import url2pathname

import pytest

import cairn
from cairn.errors import CairnError

# ---- payloads --------------------------------------------------------------------------------------

PWNED = "cairn-pwned"  # the file a payload that escaped would create (probed next to every place named below)

CATEGORIES: dict[str, list[str]] = {
    "traversal": [
        "..",
        "../x",
        ".",
        "../",
        "./",
        "../../etc/passwd",
        "../" * 10 + f"tmp/{PWNED}",
        "x/../../y",
        "x/..",
        "./x",
        "a/./b",
        "...",
        "..x",
        "x..",
        ".x",
        "-x",
        "a/b",
        "a//b",
        "/",
        "//",
        ".cairn/cairn.db",
        "../project/.cairn/artifacts/objects",
        "objects/ab/cd",
    ],
    "absolute": [
        f"/tmp/{PWNED}",
        "/etc/passwd",
        "/root/.ssh/authorized_keys",
        f"//server/share/{PWNED}",
        "~",
        f"~/{PWNED}",
        f"~root/{PWNED}",
        "/dev/null",
        "/proc/self/environ",
    ],
    "windows": [
        "..\\x",
        "..\\..\\windows\\system32",
        "C:\\Windows\\System32",
        "C:x",
        "c:/x",
        "\\\\server\\share",
        "a\\b",
        "\\",
        "nul:",
        "x::$DATA",
        "COM1:",
    ],
    "control": [
        "\n",
        "\x00",
        "a\x00b",
        "x\x00/../../y",
        "a\nb",
        "\r\n",
        "a\rb",
        "\t",
        "a\tb",
        "\x1b[31mred\x1b[0m",
        "\x7f",
        "\x08",
        "\x0b",
        "\x0c",
        "\x85",
    ],
    "long": ["a" * 10_000, "a" * 129, "a" * 257, "../" * 3334, "a/" * 5000, "\u00e9" * 5000],
    "lookalike": [
        "\uff0e\uff0e\uff0fx",  # fullwidth ../x
        "\u2024\u2024/x",  # one dot leaders
        "x\u2215y",  # division slash
        "x\u2044y",  # fraction slash
        "\u0430",  # Cyrillic a
        "b\u0430se",
        "\uff42\uff41\uff53\uff45",  # fullwidth base
        "base\u200b",  # zero-width space
        "\u200b",
        "\u202ebase",  # right-to-left override
        "base\u00a0",  # no-break space
        "\u00a0",
        "\ufb01le",  # fi ligature
        "e\u0301",  # combining accent
        "\u0130",  # dotted capital I
        "\ufeffbase",  # byte order mark
        "a\u2028b",  # line separator
        "a\u2029b",
        "\U0001f4a9",
        "x\udcff",  # an undecodable byte, as Python sees it in argv (surrogateescape)
        "\u00b2",  # superscript two: a digit to str.isdigit, not to int
        "\u0661",  # Arabic-Indic one: a digit to int too
    ],
    "shell": [
        f"$(touch {PWNED})",
        f"`touch {PWNED}`",
        f"; touch {PWNED}",
        f"| touch {PWNED}",
        f"&& touch {PWNED}",
        f"x > {PWNED}",
        "x < /etc/passwd",
        "*",
        "?",
        "[a-z]",
        "{a,b}",
        "$HOME",
        "${IFS}",
        "'",
        '"',
        "!",
        "#",
        "%",
        "a b",
        " base",
        "base ",
        "x;y",
        "x&y",
        "x|y",
        "$",
        "^",
        "=",
        "@",
        "base@x",
        "-",
        "--help",
        "-rf",
    ],
    "empty": ["", " ", "   "],
    "url": [
        "%2e%2e%2f",
        "..%2f",
        "%2e%2e/",
        "%2e%2e%5c",
        "%252e%252e%252f",
        "%00",
        "x%00",
        "%0a",
        "..%c0%af",
        "%c0%ae%c0%ae/",
        "file:///etc/passwd",
        "s3://bucket/x",
        "http://127.0.0.1:1/x",
        "memory://x",
    ],
    "injection": [
        "'; DROP TABLE runs; --",
        "' OR '1'='1",
        "x' --",
        "{}",
        "{0}",
        "%s",
        "%(x)s",
        "[bold]x[/]",
        "<script>alert(1)</script>",
        "latest~99999999999999999999",
        "latest~\u00b2",
        "latest~-1",
    ],
}

_LEGAL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


def legal_name(text: str) -> bool:
    """The rule of DESIGN §4, written independently of cairn's own validator."""
    return _LEGAL_NAME.fullmatch(text) is not None and ".." not in text


_LEGAL_PARTITION = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:|+-]{0,255}")


def legal_partition(text: str) -> bool:
    """A partition key may also hold ':', '|' and '+' and be 256 characters long; "" is no partition."""
    return _LEGAL_PARTITION.fullmatch(text) is not None and ".." not in text


def legal_step(text: str) -> bool:
    """``asset`` or ``asset@partition`` with both parts well formed: a query for a step, not a hostile one."""
    asset, _, partition = text.partition("@")
    return legal_name(asset) and (partition == "" or legal_partition(partition))


def _variants(base: str) -> list[str]:
    """A payload alone and embedded in a legal name: a validator anchored at only one end lets those through."""
    return [base, f"ok{base}", f"{base}ok"]


def _payloads() -> tuple[str, ...]:
    found = dict.fromkeys(v for bases in CATEGORIES.values() for base in bases for v in _variants(base))
    return tuple(p for p in found if not legal_name(p))


PAYLOADS = _payloads()
# The default run: per category the first two payloads, and the first one embedded at either end of a name.
QUICK = tuple(
    p
    for p in dict.fromkeys(
        v for bases in CATEGORIES.values() for v in (bases[0], bases[1], f"ok{bases[0]}", f"{bases[0]}ok")
    )
    if not legal_name(p)
)


def test_the_payloads_are_many_distinct_and_none_is_a_legal_name() -> None:
    assert len(PAYLOADS) >= 200
    assert len(set(PAYLOADS)) == len(PAYLOADS)
    assert not [p for p in PAYLOADS if legal_name(p)]
    assert set(QUICK) <= set(PAYLOADS) and len(QUICK) >= 30


# ---- the sandbox ------------------------------------------------------------------------------------

DEPTH = 12  # folders between the listed root and the sandbox: a relative path climbing less stays listed
PROBED = (PWNED, "objects", "files", "cairn.db", "pwned")  # names an escape would create in the places below

MAIN = """\
import cairn


@cairn.asset(params={"n": 2})
def base(ctx):
    return [1] * ctx.params["n"]


@cairn.asset(partitions=cairn.static("us", "eu"))
def seg(ctx, base):
    return {"partition": ctx.partition, "n": len(base)}


@cairn.asset(params={"label": "plain"})
def echo(ctx):
    return ctx.params["label"]
"""

CONFIG_PIPELINE = """\
import cairn


@cairn.asset
def one(ctx):
    return 1
"""


@dataclass
class Tally:
    """What the cases did, for the summary line."""

    cases: int = 0
    payloads: set[str] = field(default_factory=set)
    entries: set[str] = field(default_factory=set)
    outcomes: dict[int, int] = field(default_factory=dict)
    outside: int = 0
    lost: int = 0
    subprocesses: int = 0

    def line(self) -> str:
        refused, failed, accepted = (self.outcomes.get(code, 0) for code in (2, 1, 0))
        return (
            f"hostile input: {self.cases} cases ({len(self.payloads)} payloads x {len(self.entries)} entry points, "
            f"{self.subprocesses} through cairn subprocesses): refused with exit 2: {refused}, accepted as plain "
            f"values or chosen places: {accepted}, failed at an unusable store (exit 1): {failed}; files created "
            f"outside the projects and stores: {self.outside}; stored results lost: {self.lost}"
        )


TALLY = Tally()


@dataclass
class Sandbox:
    top: Path  # everything below is listed before and after each case
    root: Path  # the working directory of every case
    home: Path
    project: Path  # materialized once; must lose nothing
    defs: Path  # its module gets hostile definitions (it shares the main project's store)
    config: Path  # its cairn.toml gets hostile values
    base_version: str
    stored: dict[tuple[str, str], Any]
    probes: tuple[Path, ...]
    clock: Iterator[int]
    originals: dict[str, int] = field(default_factory=dict)  # the stored objects before the first case: their sizes

    @property
    def projects(self) -> tuple[Path, ...]:
        return (self.project, self.defs, self.config)

    @property
    def objects(self) -> Path:
        return self.project / ".cairn" / "artifacts" / "objects"


def _write(path: Path, text: str, sandbox: Sandbox | None = None) -> None:
    path.write_text(text, encoding="utf-8")
    if sandbox is not None:  # a new mtime each time: the project notices the edit even within one clock tick
        stamp = next(sandbox.clock)
        os.utime(path, ns=(stamp, stamp))


def _storage_of(project: Path) -> str:
    db = project / ".cairn" / "cairn.db"
    return f'[storage]\nartifacts = "{project / ".cairn" / "artifacts"}"\ndatabase = "sqlite:///{db}"\n'


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    top = tmp_path_factory.mktemp("hostile")
    root = top.joinpath(*(f"d{i}" for i in range(DEPTH)), "sandbox")
    home, project, defs, config = (root / name for name in ("home", "project", "defs", "config"))
    for folder in (home, project, defs, config):
        folder.mkdir(parents=True)
    executor = '[executor]\nkind = "inline"\n'
    _write(
        project / "cairn.toml",
        f'[project]\nname = "main"\nmodules = ["pipeline"]\n{executor}[profiles.bigger]\nbase = {{ n = 3 }}\n',
    )
    _write(project / "pipeline.py", MAIN)
    defs_config = f'[project]\nname = "defs"\nmodules = ["hostile_defs"]\n{executor}{_storage_of(project)}'
    _write(defs / "cairn.toml", defs_config)
    _write(defs / "hostile_defs.py", "import cairn\n")
    _write(config / "cfg_pipeline.py", CONFIG_PIPELINE)
    real_home = Path(os.path.expanduser("~"))
    places = {Path("/"), Path("/tmp"), Path("/root"), Path("/etc"), real_home, top.parent}
    probes = tuple(place / name for place in sorted(places) for name in PROBED)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HOME", str(home))  # a payload's ~ stays in the sandbox
        env.setenv("COLUMNS", "200")
        env.chdir(root)  # where a relative path that escaped would land: in the listed tree
        env.delenv("CAIRN_USER", raising=False)
        result = cairn.materialize(project=project)
        assert result.ok, [s.error for s in result.steps]
        stored = {(a, p): cairn.load(a, partition=p or None, project=project) for a, p in _STORED}
        base_version = next(s.data_version for s in result.steps if s.asset == "base")
        assert base_version is not None
        _cli_in_process(["snapshot", "create", f"--project={project}", "pinned"], root)
        sb = Sandbox(
            top, root, home, project, defs, config, base_version, stored, probes, itertools.count(10**18, 10**9)
        )
        sb.originals = {str(path): path.stat().st_size for path in sb.objects.glob("*/*")}
        assert len(sb.originals) >= 3
        yield sb
        for (asset, partition), value in stored.items():  # the last word: everything stored before still loads
            assert cairn.load(asset, partition=partition or None, project=project) == value
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and TALLY.cases:
        with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
            reporter.write_line("")
            reporter.write_line(TALLY.line())


_STORED = (("base", ""), ("seg", "us"), ("seg", "eu"))


# ---- running one case ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str
    crash: str | None = None  # an exception that the CLI would have shown as a traceback

    @property
    def message(self) -> str:
        return self.err + self.out


_COMMAND: Any = None


def _command() -> Any:
    """The click command of the Typer app, built once (building it costs more than most commands take)."""
    global _COMMAND
    if _COMMAND is None:
        import typer.main

        from cairn.cli.main import app

        _COMMAND = typer.main.get_command(app)
    return _COMMAND


def _cli_in_process(args: list[str], cwd: Path) -> Outcome:
    """`cairn ARGS` through `cairn.cli.main.main`: its own error handling turns cairn errors into exit codes."""
    import cairn.cli.main as cli_main

    out, err = io.StringIO(), io.StringIO()
    code, crash = 0, None
    with (
        mock.patch.object(sys, "argv", ["cairn", *args]),
        mock.patch.object(cli_main, "app", _command()),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        try:
            cli_main.main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException as exc:
            code, crash = 1, f"{type(exc).__name__}: {exc}"
        finally:
            os.chdir(cwd)  # -C changes the working directory of this process
    return Outcome(code, out.getvalue(), err.getvalue(), crash)


def _api(call: Callable[[], Any]) -> Outcome:
    """A Python entry point: a cairn error carries the exit code the CLI would use."""
    try:
        call()
    except CairnError as exc:
        return Outcome(exc.exit_code, "", str(exc))
    except Exception as exc:
        return Outcome(1, "", "", f"{type(exc).__name__}: {exc}")
    return Outcome(0, "", "")


Tree = dict[str, tuple[bool, int]]


def _tree(top: Path, inside: tuple[Path, ...] = ()) -> Tree:
    """Every folder and file below `top` with its size, except inside the folders `inside` (where a case may
    write: the projects, whose stored objects are checked on their own)."""
    found: Tree = {}
    skipped = {str(folder) for folder in inside}
    for folder, dirs, files in os.walk(top):
        dirs[:] = [name for name in dirs if os.path.join(folder, name) not in skipped]
        for name in dirs:
            found[os.path.join(folder, name)] = (True, 0)
        for name in files:
            path = os.path.join(folder, name)
            with contextlib.suppress(OSError):
                found[path] = (False, os.lstat(path).st_size)
    return found


def _size(path: str) -> int | None:
    try:
        return os.lstat(path).st_size
    except OSError:
        return None


def _within(path: str | Path, folder: Path) -> bool:
    return os.path.commonpath([str(path), str(folder)]) == str(folder)


# ---- entry points ----------------------------------------------------------------------------------

NAME, VALUE, LOCATION = "name", "value", "location"


@dataclass(frozen=True)
class Entry:
    """One place where a payload enters cairn."""

    id: str
    kind: str
    what: str  # a regex that the error must match: it names what is wrong
    call: Callable[[Sandbox, str], Outcome]
    argv: Callable[[Sandbox, str], list[str]] | None = None  # the command line, for the subprocess sweep
    applies: Callable[[str], bool] = lambda payload: True
    location: Callable[[Sandbox, str], tuple[str, Path | None]] | None = None  # (the value to write, its place)


def cli_entry(
    entry_id: str,
    what: str,
    argv: Callable[[Sandbox, str], list[str]],
    kind: str = NAME,
    applies: Callable[[str], bool] = lambda payload: True,
) -> Entry:
    return Entry(entry_id, kind, what, lambda sb, p: _cli_in_process(argv(sb, p), sb.root), argv, applies)


def _p(sb: Sandbox) -> str:
    return f"--project={sb.project}"


def _prefix(sb: Sandbox) -> str:
    return sb.base_version.removeprefix("b3:")[:12]


FOUND = "partition|materialization"  # a well-formed key that names nothing stored

# Options are passed as --option=VALUE and arguments after "--", as a careful script passes untrusted text; a
# payload that starts with "-" then reaches cairn rather than the option parser.
CLI_ENTRIES = [
    cli_entry("run --partition", "partition", lambda sb, p: ["run", "seg", _p(sb), f"--partition={p}"]),
    cli_entry("why ASSET@PARTITION", "partition", lambda sb, p: ["why", _p(sb), "--", f"seg@{p}"]),
    cli_entry("lineage ASSET@PARTITION", FOUND, lambda sb, p: ["lineage", _p(sb), "--", f"seg@{p}"]),
    cli_entry("reproduce ASSET@PARTITION", FOUND, lambda sb, p: ["reproduce", _p(sb), "--", f"seg@{p}"]),
    cli_entry("why ASSET", "asset|partition", lambda sb, p: ["why", _p(sb), "--", p]),
    # An empty STEP is the optional argument left out; a well-formed step is a filter (logs read history only, and
    # a run may hold steps the project no longer has): neither is hostile there.
    cli_entry(
        "logs RUN ASSET",
        "asset|partition",
        lambda sb, p: ["logs", _p(sb), "--", "latest", p],
        NAME,
        lambda p: bool(p) and not legal_step(p),
    ),
    cli_entry("snapshot create", "snapshot", lambda sb, p: ["snapshot", "create", _p(sb), "--", p, "base"]),
    cli_entry("snapshot show", "snapshot", lambda sb, p: ["snapshot", "show", _p(sb), "--", p]),
    cli_entry("run --snapshot", "snapshot", lambda sb, p: ["run", "seg", _p(sb), f"--snapshot={p}"]),
    cli_entry("run --profile", "profile", lambda sb, p: ["run", _p(sb), f"--profile={p}"]),
    cli_entry("show RUN", "run", lambda sb, p: ["show", _p(sb), "--", p]),
    cli_entry("logs RUN", "run", lambda sb, p: ["logs", _p(sb), "--", p]),
    cli_entry("diff RUN", "run", lambda sb, p: ["diff", _p(sb), "--", p, "latest"]),
    cli_entry("run --set KEY", "--set|asset|param", lambda sb, p: ["run", _p(sb), f"--set={p}=1"]),
    cli_entry("run --set ASSET.KEY", "--set|asset|param", lambda sb, p: ["run", _p(sb), f"--set=echo.{p}=1"]),
    cli_entry(
        "run --set VALUE",
        "--set|param",
        lambda sb, p: ["run", "echo", _p(sb), "--force", f"--set=echo.label={p}"],
        VALUE,
    ),
    # No command line carries a NUL byte; in this process Typer's path conversion (os.stat) raises on it first.
    cli_entry("-C DIR", "-C|cairn\\.toml|folder", lambda sb, p: ["-C", p, "status"], NAME, lambda p: "\x00" not in p),
    cli_entry("--project DIR", "project|cairn\\.toml|folder", lambda sb, p: ["status", f"--project={p}"]),
    cli_entry("alias set NAME", "alias", lambda sb, p: ["alias", "set", _p(sb), "--", p, f"base@{_prefix(sb)}"]),
    cli_entry(
        "alias set ASSET@REF",
        "data version|materialization|snapshot|alias",
        lambda sb, p: ["alias", "set", _p(sb), "--", "ok", f"base@{p}"],
    ),
    cli_entry("users add NAME", "user", lambda sb, p: ["users", "add", _p(sb), "--role=admin", "--", p]),
    cli_entry("models show NAME", "model", lambda sb, p: ["models", "show", _p(sb), "--", p]),
    cli_entry("models show NAME@VERSION", "version|model", lambda sb, p: ["models", "show", _p(sb), "--", f"seg@{p}"]),
    cli_entry("models approve VERSION", "version", lambda sb, p: ["models", "approve", _p(sb), "--", "seg", p]),
]


def _api_entries() -> list[Entry]:
    def load(**kw: Any) -> Callable[[Sandbox, str], Outcome]:
        def call(sb: Sandbox, p: str) -> Outcome:
            args = {k: (p if v is None else v) for k, v in kw.items()}
            return _api(lambda: cairn.load(project=sb.project, **args))

        return call

    def model(sb: Sandbox, p: str) -> Outcome:
        return _api(lambda: cairn.models.load(p, project=sb.project))

    return [
        Entry("cairn.load(name)", NAME, "asset", load(name=None)),
        # partition="" is the default (no partition); a well-formed key that names nothing has no materialization.
        Entry(
            "cairn.load(partition=)", NAME, "partition|materialization", load(name="seg", partition=None), None, bool
        ),
        Entry("cairn.load(snapshot=)", NAME, "snapshot", load(name="base", snapshot=None)),
        Entry("cairn.models.load(name)", NAME, "model", model),
    ]


DEFINITIONS = {
    "asset name": ("asset", "def _fn(ctx):\n    return 1\n\n\nhostile = cairn.asset(name=PAYLOAD)(_fn)\n"),
    "static partition key": (
        "partition",
        "@cairn.asset(partitions=cairn.static('ok', PAYLOAD))\ndef part(ctx):\n    return 1\n",
    ),
    "pool": ("pool", "@cairn.asset(pool=PAYLOAD)\ndef pooled(ctx):\n    return 1\n"),
    "uses": ("external system", "@cairn.asset(uses=[PAYLOAD])\ndef user(ctx):\n    return 1\n"),
    "source name": ("asset|source", "raw = cairn.source(PAYLOAD, path='raw.csv')\n"),
    "input mapping": ("asset|input", "@cairn.asset(ins={'x': PAYLOAD})\ndef mapped(ctx, x):\n    return x\n"),
}


def _definition_entry(label: str, what: str, body: str) -> Entry:
    # A well-formed partition key (up to 256 characters, ':' '|' '+' allowed) is no hostile definition.
    applies = (lambda p: not legal_partition(p)) if "partition" in label else (lambda p: True)

    def call(sb: Sandbox, payload: str) -> Outcome:
        text = f"import cairn\n\nPAYLOAD = {payload!r}\n\n\n@cairn.asset\ndef ok(ctx):\n    return 1\n\n\n{body}"
        _write(sb.defs / "hostile_defs.py", text, sb)
        return _cli_in_process(["run", f"--project={sb.defs}"], sb.root)

    return Entry(f"definition: {label}", NAME, what, call, applies=applies)


def toml_string(text: str) -> str | None:
    """`text` as a TOML basic string; None when TOML cannot hold it (a lone surrogate is no character)."""
    out = []
    for c in text:
        if 0xD800 <= ord(c) <= 0xDFFF:
            return None
        if c in '"\\':
            out.append("\\" + c)
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def _rebased(sb: Sandbox, path: str) -> str:
    """An absolute path re-rooted below the listed root: the same shape, in a place the test may write."""
    return str(sb.top) + "/" + path.lstrip("/")


_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_REMOTE = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "adl", "hdfs", "sftp", "ftp", "ssh"})
_NOWHERE = Path("/nowhere")  # marks a place outside any sandbox: the case does not apply


def _artifacts_place(sb: Sandbox, payload: str) -> tuple[str, Path | None]:
    """The value to write as ``[storage] artifacts`` and the folder cairn opens for it (storage/factory.py)."""
    value, scheme = payload, _SCHEME.match(payload)
    if scheme is not None:
        rest = payload[scheme.end() :]
        rest = rest[len("localhost") :] if rest.startswith("localhost/") else rest
        if scheme.group(1).lower() in _REMOTE:
            return value, _NOWHERE  # another system, reached over the network: not this test's to write
        if scheme.group(1).lower() != "file" or not rest.startswith("/"):
            return value, None  # memory:// or a remote store: no place on this machine
        value = "file://" + _rebased(sb, rest)
        return value, Path(os.path.abspath(url2pathname(value[len("file://") :])))
    expanded = os.path.expanduser(payload) if payload.startswith("~") else payload
    if os.path.isabs(expanded):
        value = expanded = _rebased(sb, expanded)
    return value, Path(os.path.abspath(sb.config / expanded))


def _database_place(sb: Sandbox, payload: str) -> tuple[str, Path | None]:
    """``sqlite:///`` + payload and the file cairn opens for it (storage/dialect.py: relative to the project)."""
    path = _rebased(sb, payload) if payload.startswith("/") else payload
    return "sqlite:///" + path, Path(os.path.abspath(sb.config / path))


def _stays_listed(place: Callable[[Sandbox, str], tuple[str, Path | None]]) -> Callable[[str], bool]:
    """Whether a payload's place lies below the listed root wherever the sandbox is (checked on a model of it):
    a path that climbs further (only the 10,000-character ``../../..``) is a place this test may not write."""
    model = Path("/listed").joinpath(*(f"d{i}" for i in range(DEPTH)), "sandbox")
    fake = Sandbox(Path("/listed"), model, model / "home", model, model, model / "config", "", {}, (), iter(()))

    def applies(payload: str) -> bool:
        if toml_string(payload) is None:
            return False
        with mock.patch.dict(os.environ, {"HOME": str(fake.home)}):
            _, where = place(fake, payload)
        return where is None or _within(where, fake.top)

    return applies


def _config_entry(
    label: str,
    what: str,
    section: Callable[[str], str],
    kind: str = NAME,
    place: Callable[[Sandbox, str], tuple[str, Path | None]] | None = None,
) -> Entry:
    def call(sb: Sandbox, payload: str) -> Outcome:
        value = place(sb, payload)[0] if place is not None else payload
        quoted = toml_string(value)
        assert quoted is not None
        for left in sb.config.iterdir():  # each case starts from the project's two files
            if left.name not in ("cairn.toml", "cfg_pipeline.py"):
                shutil.rmtree(left) if left.is_dir() and not left.is_symlink() else left.unlink()
        head = '[project]\nname = "config"\nmodules = ["cfg_pipeline"]\n[executor]\nkind = "inline"\n'
        text = section(quoted)
        _write(sb.config / "cairn.toml", text if text.startswith("[project]") else head + text, sb)
        return _cli_in_process(["run", f"--project={sb.config}"], sb.root)

    applies = _stays_listed(place) if place is not None else (lambda p: toml_string(p) is not None)
    return Entry(f"cairn.toml: {label}", kind, what, call, applies=applies, location=place)


CONFIG_ENTRIES = [
    _config_entry(
        "[storage] artifacts",
        r"\[storage\] artifacts|storage\.artifacts",
        lambda q: f"[storage]\nartifacts = {q}\n",
        LOCATION,
        _artifacts_place,
    ),
    _config_entry(
        "[storage] database = sqlite:///PATH",
        "database",
        lambda q: f"[storage]\ndatabase = {q}\n",
        LOCATION,
        _database_place,
    ),
    _config_entry("[storage] database", "database", lambda q: f"[storage]\ndatabase = {q}\n"),
    _config_entry("[pools]", "pool", lambda q: f"[pools]\n{q} = 1\n"),
    _config_entry(
        "[circuit_breakers]", "external system", lambda q: f"[circuit_breakers]\n{q} = {{ failures = 1, cooldown = 1 }}"
    ),
    _config_entry("[profiles]", "profile", lambda q: f"[profiles.{q}]\none = {{ x = 1 }}\n"),
    _config_entry("[params]", "asset", lambda q: f"[params]\n{q} = {{ x = 1 }}\n"),
    _config_entry("[project] modules", "module", lambda q: f'[project]\nname = "config"\nmodules = [{q}]\n'),
]

ENTRIES: list[Entry] = [
    *CLI_ENTRIES,
    *_api_entries(),
    *(_definition_entry(label, what, body) for label, (what, body) in DEFINITIONS.items()),
    *CONFIG_ENTRIES,
]
BY_ID = {entry.id: entry for entry in ENTRIES}


def literal(raw: str) -> Any:
    """What ``--set a.p=RAW`` sets (DESIGN §3): the TOML literal RAW is, else the plain (stripped) string."""
    text = raw.strip()
    try:
        doc = tomllib.loads(f"v = {text}")
    except tomllib.TOMLDecodeError:
        return text
    return doc["v"] if doc.keys() == {"v"} else text


def check_case(sb: Sandbox, entry: Entry, payload: str) -> None:
    before = _tree(sb.top, sb.projects)
    probed = {p for p in sb.probes if os.path.lexists(p)}
    value, place = entry.location(sb, payload) if entry.location is not None else (payload, None)
    try:
        outcome = entry.call(sb, payload)
        after = _tree(sb.top, sb.projects)
        new = sorted(set(after) - set(before))
        allowed = [sb.project, sb.defs, sb.config] + ([place] if place is not None else [])
        escaped = [p for p in new if not any(_within(p, folder) for folder in allowed)]
        if place is not None:  # the folders leading to a chosen place are part of making it
            escaped = [p for p in escaped if not _within(place, Path(p))]
        escaped += [str(p) for p in sb.probes if os.path.lexists(p) and p not in probed]
        lost = [p for p, size in sb.originals.items() if _size(p) != size]
        TALLY.cases += 1
        TALLY.payloads.add(payload)
        TALLY.entries.add(entry.id)
        TALLY.outcomes[outcome.code] = TALLY.outcomes.get(outcome.code, 0) + 1
        TALLY.outside += len(escaped)
        TALLY.lost += len(lost)
        shown = f"{entry.id} with {payload[:80]!r}"
        assert not escaped, f"{shown} created files outside the projects and the store: {escaped[:5]}"
        assert not lost, f"{shown} changed or removed stored objects: {lost[:5]}"
        assert outcome.crash is None, f"{shown} raised (a traceback on the command line): {outcome.crash}"
        assert "Traceback" not in outcome.message, f"{shown} printed a traceback:\n{outcome.message[-2000:]}"
        _expect(sb, entry, payload, value, place, outcome, shown)
    finally:
        if place is not None:
            _clean(before, place, sb)


def _expect(
    sb: Sandbox, entry: Entry, payload: str, value: str, place: Path | None, outcome: Outcome, shown: str
) -> None:
    message = outcome.message
    if entry.kind == NAME or (entry.kind == LOCATION and outcome.code == 2):
        assert outcome.code == 2, f"{shown}: exit {outcome.code}, expected 2 (a usage or definition error):\n{message}"
        said = re.search(f"{entry.what}|not valid UTF-8", message, re.IGNORECASE)
        assert said, f"{shown}: the error does not say what is wrong:\n{message}"
    elif entry.kind == VALUE:
        assert outcome.code in (0, 2), f"{shown}: exit {outcome.code}:\n{message}"
        if outcome.code == 0:
            assert cairn.load("echo", project=sb.project) == literal(payload), shown
    else:  # a place the user chose: the store is there, or the run says it could not use it
        assert outcome.code in (0, 1), f"{shown}: exit {outcome.code}:\n{message}"
        if outcome.code == 0 and place is not None:
            assert place.exists(), f"{shown}: the run succeeded but nothing is at {place}"
        elif outcome.code == 1:
            assert "Traceback" not in message and message.strip(), f"{shown}: exit 1 without a message"
    if payload in _QUICK or TALLY.cases % 25 == 0:  # the objects' bytes are checked every case, loading often
        for (asset, partition), stored in sb.stored.items():
            assert cairn.load(asset, partition=partition or None, project=sb.project) == stored, shown


def _clean(before: Tree, place: Path, sb: Sandbox) -> None:
    """Remove what a case created at the place it chose (never anything that was there before)."""
    for path in sorted(set(_tree(sb.top, sb.projects)) - set(before), key=len, reverse=True):
        if _within(path, place) or _within(place, Path(path)):
            with contextlib.suppress(OSError):
                shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.remove(path)


# ---- the cases -------------------------------------------------------------------------------------


def _cases(payloads: tuple[str, ...]) -> list[Any]:
    return [
        pytest.param(entry.id, payload, id=f"{entry.id}-{PAYLOADS.index(payload):03d}")
        for entry in ENTRIES
        for payload in payloads
        if entry.applies(payload)
    ]


_QUICK = frozenset(QUICK)
REST = tuple(p for p in PAYLOADS if p not in _QUICK)


@pytest.mark.parametrize(("entry_id", "payload"), _cases(QUICK))
def test_a_hostile_name_is_refused_and_nothing_escapes(sandbox: Sandbox, entry_id: str, payload: str) -> None:
    check_case(sandbox, BY_ID[entry_id], payload)


@pytest.mark.slow
@pytest.mark.parametrize(("entry_id", "payload"), _cases(REST))
def test_every_payload_through_every_entry_point(sandbox: Sandbox, entry_id: str, payload: str) -> None:
    check_case(sandbox, BY_ID[entry_id], payload)


# ---- through real processes ------------------------------------------------------------------------

SWEPT = [entry for entry in CLI_ENTRIES if entry.argv is not None]


def _argv_safe(payload: str) -> bool:
    """Whether a command line can carry the payload (no NUL; lone surrogates only as undecodable bytes)."""
    if "\x00" in payload:
        return False
    try:
        os.fsencode(payload)
    except UnicodeEncodeError:
        return False
    return True


@pytest.mark.slow
def test_every_payload_crosses_a_real_process_boundary_once(sandbox: Sandbox) -> None:
    """Payload i goes through CLI entry point i mod N, as a `cairn` subprocess: what argv does to the text (its
    encoding, undecodable bytes), the real exit code and stderr. Two at a time; the tree is listed around all."""
    jobs = [(SWEPT[i % len(SWEPT)], p) for i, p in enumerate(PAYLOADS) if _argv_safe(p)]
    jobs = [(e, p) for e, p in jobs if e.kind == NAME and e.applies(p)]
    before = _tree(sandbox.top, sandbox.projects)
    probed = {p for p in sandbox.probes if os.path.lexists(p)}
    env = {**os.environ, "COLUMNS": "200", "HOME": str(sandbox.home)}

    def one(job: tuple[Entry, str]) -> tuple[Entry, str, subprocess.CompletedProcess[str]]:
        entry, payload = job
        assert entry.argv is not None
        args = [sys.executable, "-m", "cairn.cli.main", *entry.argv(sandbox, payload)]
        done = subprocess.run(
            args, cwd=sandbox.root, env=env, capture_output=True, text=True, errors="backslashreplace", timeout=120
        )
        return entry, payload, done

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(one, jobs))
    after = _tree(sandbox.top, sandbox.projects)
    escaped = [p for p in set(after) - set(before) if not any(_within(p, f) for f in sandbox.projects)]
    escaped += [str(p) for p in sandbox.probes if os.path.lexists(p) and p not in probed]
    TALLY.subprocesses += len(results)
    TALLY.outside += len(escaped)
    assert not escaped, escaped[:5]
    wrong = []
    for entry, payload, done in results:
        TALLY.cases += 1
        TALLY.payloads.add(payload)
        TALLY.entries.add(entry.id)
        TALLY.outcomes[done.returncode] = TALLY.outcomes.get(done.returncode, 0) + 1
        said = re.search(f"{entry.what}|not valid UTF-8", done.stderr, re.IGNORECASE)
        if done.returncode != 2 or "Traceback" in done.stderr or not said:
            wrong.append(f"{entry.id} {payload[:60]!r}: exit {done.returncode}: {done.stderr[-500:]}")
    assert not wrong, "\n".join(wrong[:10])
    for (asset, partition), value in sandbox.stored.items():
        assert cairn.load(asset, partition=partition or None, project=sandbox.project) == value


def test_the_summary_names_the_figures() -> None:
    line = Tally(cases=3, payloads={"a", "b"}, entries={"x"}, outcomes={2: 3}).line()
    assert "3 cases (2 payloads x 1 entry points" in line and "outside the projects and stores: 0" in line
