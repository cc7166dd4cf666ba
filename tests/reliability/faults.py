"""The fault seam of the reliability suite: kills, injected OS and database errors, and the store audit.

Nothing here edits cairn: faults are injected from outside.

- **Kills.** `Zygote` is a process that has imported cairn's command line once and forks one `cairn`
  command per request into a session of its own, so an engine start costs a fork, not an interpreter start,
  and `os.killpg` reaches the engine and the workers it forked. `worker_pids` lists an engine's workers.
- **OS errors.** `os_faults` patches the `os` calls a local artifact store makes (``os.open``, ``os.fdopen``
  writes and flushes, ``os.write``, ``os.fsync``, ``os.mkdir``, ``os.link``, ``os.replace``, ``os.remove``)
  so that the n-th call at one named site under the store's folder raises ``ENOSPC`` or ``EIO``.
- **Database errors.** `sqlite_faults` makes `sqlite3.connect` return connections whose cursors raise
  ``sqlite3.OperationalError('database or disk is full')`` or ``('disk I/O error')`` at the n-th statement
  (or the ``COMMIT``) of one named kind of transaction: a run's row, a claim, a commit, step records, ...
- **The audit.** `audit` checks a project's store the way the suite's promises say: every object's bytes hash
  to its name, every row names an object that exists, each cache key is committed once, no step committed by
  one run was executed by a later one (the asset functions log each execution, keyed by its data), nothing is
  left running.
- **Figures.** `FIGURES` counts what the campaign did; the test module prints them at its end.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import select
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Self
from unittest import mock

from cairn.hashing import digest_bytes

# ---- figures -------------------------------------------------------------------------------------


# What each audit adds to the figures, printed last on each line.
AUDIT_FIGURES = ("audits", "corrupt_objects_found", "dangling_rows", "double_executions", "left_running")


@dataclass
class Figures:
    """What the campaign did, per category, for the summary lines printed at the end."""

    counts: dict[str, Counter[str]] = field(default_factory=dict)
    seeds: dict[str, int] = field(default_factory=dict)

    def add(self, category: str, **counts: int) -> None:
        self.counts.setdefault(category, Counter()).update(counts)

    def lines(self) -> list[str]:
        """One line per category: what was done, then what the audits found."""
        out = []
        for category, counts in self.counts.items():
            seed = f" (seed {self.seeds[category]})" if category in self.seeds else ""
            names = [n for n in counts if n not in AUDIT_FIGURES] + [n for n in AUDIT_FIGURES if n in counts]
            parts = ", ".join(f"{name.replace('_', ' ')}: {counts[name]}" for name in names)
            out.append(f"fault campaign, {category}{seed}: {parts}")
        return out


FIGURES = Figures()


# ---- the campaign project ------------------------------------------------------------------------

CONFIG = """\
[project]
name = "faults"
modules = ["pipeline"]
seed = 5

[storage]
artifacts = ".cairn/artifacts"
database = "sqlite:///.cairn/cairn.db"

[executor]
kind = "{executor}"
workers = 2

[defaults]
retry = {{ max_attempts = {attempts}, backoff = 0.0 }}

[engine]
heartbeat_s = 0.2
lease_ttl_s = 30
stale_after_s = {stale_after_s}
"""

PIPELINE = '''\
"""Two partitioned assets; every execution appends ``asset partition epoch run attempt`` to executions.log."""

import json
import os
import time

import cairn

# Relative to the project folder (`cairn -C` makes it the working directory of the engine and its workers),
# so that a copy of the project has the same code versions.
LOG = "executions.log"
# {{"slow": seconds more per step, "flaky": each first attempt fails, "broken": partitions that always fail}}
KNOBS = "knobs.json"
SLEEP = {sleep!r}
PAD = {pad!r}
PARTS = cairn.static(*SLEEP)


def _log(asset, ctx):
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{{asset}} {{ctx.partition}} {{ctx.params['epoch']}} {{ctx.run_id}} {{ctx.attempt}}\\n".encode())
    finally:
        os.close(fd)


def _knobs():
    if not os.path.exists(KNOBS):
        return {{}}
    with open(KNOBS, encoding="utf-8") as fh:
        return json.load(fh)


@cairn.asset(partitions=PARTS, params={{"epoch": 0}})
def w(ctx):
    _log("w", ctx)
    knobs = _knobs()
    ctx.log.info("w %s of epoch %s", ctx.partition, ctx.params["epoch"])
    time.sleep(SLEEP[ctx.partition] + knobs.get("slow", 0.0))
    if knobs.get("flaky") and ctx.attempt == 1:
        raise RuntimeError("a flaky first attempt")
    if ctx.partition in knobs.get("broken", ()):
        raise RuntimeError("a broken partition")
    return {{"p": ctx.partition, "e": ctx.params["epoch"], "pad": "x" * PAD[ctx.partition]}}


@cairn.asset(partitions=PARTS, params={{"epoch": 0}})
def v(ctx, w):
    _log("v", ctx)
    time.sleep(SLEEP[ctx.partition] / 2)
    return {{"p": ctx.partition, "e": ctx.params["epoch"], "from": w["e"], "n": len(w["pad"])}}
'''

ASSETS = ("w", "v")


def write_project(
    root: Path,
    rng: random.Random,
    partitions: int,
    *,
    executor: str = "process",
    sleep: tuple[float, float] = (0.002, 0.02),
    attempts: int = 1,
    stale_after_s: float = 1.0,
) -> Path:
    """A project of two assets over `partitions` static partitions (``p000``...); `w` sleeps in `sleep` seconds
    and one partition in four returns ~50 kB, so that object writes take time too."""
    root.mkdir(parents=True, exist_ok=True)
    names = [f"p{i:03d}" for i in range(partitions)]
    sleeps = {name: round(rng.uniform(*sleep), 4) for name in names}
    pads = {name: rng.choice([0, 0, 0, 50_000]) for name in names}
    config = CONFIG.format(executor=executor, attempts=attempts, stale_after_s=stale_after_s)
    (root / "cairn.toml").write_text(config, encoding="utf-8")
    (root / "pipeline.py").write_text(PIPELINE.format(sleep=sleeps, pad=pads), encoding="utf-8")
    return root


def epoch_args(epoch: int) -> list[str]:
    """`cairn run` arguments that make every step's cache key new: the epoch param of both assets."""
    return ["--set", f"w.epoch={epoch}", "--set", f"v.epoch={epoch}"]


# ---- processes -----------------------------------------------------------------------------------

_ZYGOTE = textwrap.dedent(
    """
    import importlib, json, os, sys
    import cairn.cli.main

    # What `cairn run` imports on its way to the first step, imported once here rather than in every engine.
    for name in sys.argv[1:]:
        importlib.import_module(name)

    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.setsid()
                for fd, name in ((1, request["stdout"]), (2, request["stderr"])):
                    target = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                    os.dup2(target, fd)
                    os.close(target)
                sys.stdin.close()
                os.chdir(request["cwd"])
                sys.argv = ["cairn", *request["args"]]
                try:
                    cairn.cli.main.main()
                    code = 0
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"pid": pid, "code": os.waitstatus_to_exitcode(status)}), flush=True)
    """
)


_PRELOAD = (
    "cairn.cli.run",
    "cairn.engine.api",
    "cairn.engine.run",
    "cairn.engine.step",
    "cairn.executors.factory",
    "cairn.executors.local",
    "cairn.io",
    "cairn.storage.metadata",
    "cairn.tracking.environment",
    "rich.console",
    "rich.table",
)


@dataclass
class Started:
    """A `cairn` command forked by the zygote: its process id (also its process group) and output files."""

    pid: int
    stdout: Path
    stderr: Path
    code: int | None = None

    def output(self) -> tuple[str, str]:
        return self.stdout.read_text(encoding="utf-8"), self.stderr.read_text(encoding="utf-8")


class Zygote:
    """Forks `cairn` commands from a process that imported the command line once (one command at a time)."""

    def __init__(self, scratch: Path) -> None:
        self._scratch = scratch
        self._count = 0
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _ZYGOTE, *_PRELOAD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0
        )
        self.current: Started | None = None

    def start(self, cwd: Path, args: Sequence[str]) -> Started:
        assert self.current is None, "the zygote runs one command at a time"
        self._count += 1
        out, err = self._scratch / f"cmd{self._count}.out", self._scratch / f"cmd{self._count}.err"
        request = {"cwd": str(cwd), "args": list(args), "stdout": str(out), "stderr": str(err)}
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(json.dumps(request).encode() + b"\n")
        reply = json.loads(self._proc.stdout.readline())
        self.current = Started(int(reply["pid"]), out, err)
        return self.current

    def exited(self, timeout: float) -> bool:
        """Whether the current command has exited, waiting up to `timeout` seconds for it."""
        assert self._proc.stdout is not None
        return bool(select.select([self._proc.stdout], [], [], timeout)[0])

    def wait(self) -> Started:
        """Wait until the current command has exited (and was reaped); its exit code is in `code`."""
        assert self.current is not None and self._proc.stdout is not None
        line = self._proc.stdout.readline()
        assert line, "the zygote died"
        started, self.current = self.current, None
        started.code = int(json.loads(line)["code"])
        return started

    def run(self, cwd: Path, args: Sequence[str]) -> Started:
        self.start(cwd, args)
        return self.wait()

    def kill(self, sig: int = signal.SIGKILL) -> Started:
        """Send `sig` to the current command's whole process group (the engine and its workers), wait for it."""
        assert self.current is not None
        pgid = self.current.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        done = self.wait()
        if sig == signal.SIGKILL:
            wait_group_gone(pgid)
        return done

    def close(self) -> None:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.close()
        self._proc.wait(timeout=30)
        self._proc.stdout.close()


def _stat(pid: int) -> tuple[str, str] | None:
    """``(command name, state)`` of a process from /proc, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as fh:
            stat = fh.read()
    except OSError:
        return None
    return stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()[0]


def alive(pid: int) -> bool:
    """Whether a process exists and has not exited (a zombie has)."""
    stat = _stat(pid)
    return stat is not None and stat[1] not in ("Z", "X")


def worker_pids(pid: int) -> list[int]:
    """The live worker processes of an engine: its children forked from it (same command name; not, say, a
    ``git`` it runs to record the environment)."""
    engine = _stat(pid)
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as fh:
            children = [int(x) for x in fh.read().split()]
    except OSError:
        return []
    found = []
    for child in children:
        stat = _stat(child)
        if engine is not None and stat is not None and stat[0] == engine[0] and stat[1] not in ("Z", "X"):
            found.append(child)
    return found


def kill_worker(pid: int) -> bool:
    """SIGKILL a worker and wait until it has died (so that one kill is never counted twice); False if it was
    gone already."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    for _ in range(1000):
        if not alive(pid):
            return True
        time.sleep(0.001)
    raise AssertionError(f"worker {pid} survived SIGKILL")


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group, read from /proc."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": state, ppid, pgrp, ...
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry))
    return members


def wait_group_gone(pgid: int) -> None:
    """Wait until no process of a SIGKILLed group is left (workers are reaped by init once the engine is gone)."""
    for _ in range(1000):
        if not group_members(pgid):
            return
        time.sleep(0.01)
    raise AssertionError(f"processes of the killed group {pgid} survived SIGKILL: {group_members(pgid)}")


_COMMAND: Any = None


def cli_in_process(root: Path, args: Sequence[str]) -> tuple[int, str]:
    """`cairn -C ROOT ARGS` through `cairn.cli.main.main` in this process (its own error handling and exit
    codes), so that faults patched into this process reach the engine and, with the inline executor, its step
    jobs; returns the exit code and what it printed (stdout, then stderr)."""
    global _COMMAND
    import io

    import typer.main

    import cairn.cli.main as cli_main

    if _COMMAND is None:
        _COMMAND = typer.main.get_command(cli_main.app)  # built once: building it costs more than a command
    out, err = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    code = 0
    with (
        mock.patch.object(sys, "argv", ["cairn", "-C", str(root), *args]),
        mock.patch.object(cli_main, "app", _COMMAND),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        try:
            cli_main.main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            os.chdir(cwd)  # -C changes the working directory of this process
    return code, out.getvalue() + err.getvalue()


# ---- the audit -----------------------------------------------------------------------------------


@dataclass
class Report:
    """What one audit found; every list must be empty."""

    objects: int = 0
    corrupt: list[str] = field(default_factory=list)
    dangling: list[str] = field(default_factory=list)
    double_commits: list[str] = field(default_factory=list)
    double_executions: list[str] = field(default_factory=list)
    unrecorded_runs: list[str] = field(default_factory=list)
    running: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        return [
            *(f"corrupt object {x}" for x in self.corrupt),
            *(f"row names a missing object: {x}" for x in self.dangling),
            *(f"cache key committed twice: {x}" for x in self.double_commits),
            *(f"committed step executed again: {x}" for x in self.double_executions),
            *(f"executed under an unrecorded run: {x}" for x in self.unrecorded_runs),
            *(f"left running: {x}" for x in self.running),
        ]


class Auditor:
    """Audits one project's store; remembers objects it hashed already (objects are immutable: a changed
    size or modification time is hashed again)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.db = root / ".cairn" / "cairn.db"
        self.objects = root / ".cairn" / "artifacts" / "objects"
        self.log = root / "executions.log"
        self._hashed: dict[Path, tuple[int, int]] = {}

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with contextlib.closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30)) as conn:
            return conn.execute(sql).fetchall()

    def executions(self) -> list[tuple[str, str, str, str, int]]:
        """``(asset, partition, epoch, run_id, attempt)`` of every execution the asset functions logged."""
        if not self.log.exists():
            return []
        found = []
        for line in self.log.read_text(encoding="utf-8").splitlines():
            fields = line.split()
            assert len(fields) == 5, f"a torn line in {self.log}: {line!r}"
            a, p, e, r, n = fields
            found.append((a, p, e, r, int(n)))
        return found

    def audit(self, *, settled: bool = False, lost: frozenset[tuple[str, str]] = frozenset()) -> Report:
        """Check the store; with `settled`, also that no run, attempt or lease is left running. A step in
        `lost` (``(asset, partition)``) had its object removed on purpose: running it again is expected."""
        report = Report()
        self._check_objects(report)
        if not self.db.exists():
            return report
        mats = self.query(
            "SELECT asset, partition, cache_key, data_version, params, run_id, attempt FROM materializations"
        )
        for asset, partition, _, version, _, _, _ in mats:
            if not self._exists(str(version)):
                report.dangling.append(f"{asset}@{partition} -> {version}")
        for (version,) in self.query("SELECT DISTINCT data_version FROM materialization_inputs"):
            if not self._exists(str(version)):
                report.dangling.append(f"input {version}")
        per_key = Counter(str(key) for asset, partition, key, *_ in mats if (asset, partition) not in lost)
        report.double_commits = sorted(key for key, n in per_key.items() if n > 1)
        order = {str(run_id): int(row_id) for row_id, run_id in self.query("SELECT id, run_id FROM runs")}
        committed: dict[tuple[str, str, str], tuple[int, int]] = {}  # data -> (run order, attempt) of its commit
        for asset, partition, _, _, params, run_id, attempt in mats:
            data = (str(asset), str(partition), str(json.loads(params).get("epoch")))
            committed[data] = min(committed.get(data, (sys.maxsize, 0)), (order[str(run_id)], int(attempt)))
        for asset, partition, epoch, run_id, attempt in self.executions():
            first = committed.get((asset, partition, epoch))
            if run_id not in order:
                report.unrecorded_runs.append(f"{asset}@{partition} epoch {epoch} by {run_id}")
            elif first is not None and (asset, partition) not in lost and (order[run_id], attempt) > first:
                report.double_executions.append(f"{asset}@{partition} epoch {epoch} again by {run_id}#{attempt}")
        if settled:
            report.running = [f"run {r}" for (r,) in self.query("SELECT run_id FROM runs WHERE status = 'running'")]
            report.running += [
                f"attempt {r} {a}@{p}"
                for r, a, p in self.query("SELECT run_id, asset, partition FROM attempts WHERE status = 'running'")
            ]
            report.running += [f"lease {k}" for (k,) in self.query("SELECT cache_key FROM leases WHERE expires_at > 0")]
        return report

    def _exists(self, digest: str) -> bool:
        hexdigest = digest.removeprefix("b3:")
        return (self.objects / hexdigest[:2] / hexdigest[2:]).is_file()

    def _check_objects(self, report: Report) -> None:
        if not self.objects.is_dir():
            return
        for shard in sorted(self.objects.iterdir()):
            for path in sorted(shard.iterdir()) if shard.is_dir() else [shard]:
                report.objects += 1
                stat = path.stat()
                seen = (stat.st_size, stat.st_mtime_ns)
                if self._hashed.get(path) == seen:
                    continue
                if path.parent.parent != self.objects or digest_bytes(path.read_bytes()) != (
                    "b3:" + path.parent.name + path.name
                ):
                    report.corrupt.append(str(path.relative_to(self.objects)))
                    continue
                self._hashed[path] = seen


# ---- OS faults -----------------------------------------------------------------------------------

# The write sites of the local artifact store, in the order one object passes them.
ARTIFACT_SITES = (
    "tmp-open",  # os.open(O_CREAT) of the temporary file under tmp/
    "tmp-write",  # a write to it (os.write, or the file object os.fdopen made)
    "tmp-flush",  # the flush of the file object's buffer (by flush, or by close)
    "tmp-fsync",  # os.fsync of the temporary file
    "shard-mkdir",  # os.mkdir of objects/ab/
    "objects-fsync",  # os.fsync of objects/ after a new shard
    "link",  # os.link of the temporary file into objects/ab/
    "replace",  # os.replace into objects/ab/ (after link failed, or over a damaged object)
    "shard-fsync",  # os.fsync of objects/ab/ after the object is placed
    "tmp-remove",  # os.remove of the temporary file after publishing
)


@dataclass
class Injected:
    """One armed fault: the n-th call at `site` raises `code`, and so do the next `times - 1` calls there."""

    site: str
    nth: int
    code: int
    times: int = 1
    calls: int = 0
    raised: int = 0

    def hit(self, site: str, where: str) -> None:
        if site != self.site:
            return
        self.calls += 1
        if self.nth <= self.calls < self.nth + self.times:
            self.raised += 1
            raise OSError(self.code, os.strerror(self.code), where)


class _FaultyFile:
    """A binary file object whose writes and flushes pass the armed fault first."""

    def __init__(self, file: IO[bytes], where: str, fault: Injected) -> None:
        self._file, self._where, self._fault = file, where, fault

    def write(self, data: Any) -> int:
        self._fault.hit("tmp-write", self._where)
        return self._file.write(data)

    def flush(self) -> None:
        self._fault.hit("tmp-flush", self._where)
        self._file.flush()

    def close(self) -> None:
        """Closing flushes what is buffered: where a full disk shows when nothing called `flush`."""
        try:
            if not self._file.closed:
                self._fault.hit("tmp-flush", self._where)
        finally:
            self._file.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)

    def __enter__(self) -> _FaultyFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def os_faults(
    store_root: Path, site: str, nth: int = 1, code: int = errno.ENOSPC, times: int = 1
) -> Iterator[Injected]:
    """Patch the `os` calls of this process so that the n-th call at one artifact-store `site` (see
    `ARTIFACT_SITES`) under `store_root` raises ``OSError(code)``; yields the armed fault (its counts)."""
    assert site in ARTIFACT_SITES, site
    fault = Injected(site, nth, code, times)
    root = os.path.abspath(store_root)
    tmp, objects = os.path.join(root, "tmp"), os.path.join(root, "objects")
    real = {
        name: getattr(os, name) for name in ("open", "fdopen", "write", "fsync", "mkdir", "link", "replace", "remove")
    }

    def fd_path(fd: int) -> str:
        try:
            return str(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            return ""

    def under(path: Any, folder: str) -> bool:
        text = os.path.abspath(os.fspath(path)) if isinstance(path, str | os.PathLike) else ""
        return text == folder or text.startswith(folder + os.sep)

    def fake_open(path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        if flags & os.O_CREAT and under(path, tmp):
            fault.hit("tmp-open", str(path))
        return int(real["open"](path, flags, mode, dir_fd=dir_fd))

    def fake_fdopen(fd: int, *args: Any, **kwargs: Any) -> Any:
        file = real["fdopen"](fd, *args, **kwargs)
        where = fd_path(fd)
        mode = args[0] if args else kwargs.get("mode", "r")
        if "w" in mode and "b" in mode and under(where, tmp):
            return _FaultyFile(file, where, fault)
        return file

    def fake_write(fd: int, data: Any) -> int:
        where = fd_path(fd)
        if under(where, tmp):
            fault.hit("tmp-write", where)
        return int(real["write"](fd, data))

    def fake_fsync(fd: Any) -> None:
        where = fd_path(fd if isinstance(fd, int) else fd.fileno())
        if under(where, tmp):
            fault.hit("tmp-fsync", where)
        elif where == objects:
            fault.hit("objects-fsync", where)
        elif under(where, objects) and os.path.isdir(where):
            fault.hit("shard-fsync", where)
        real["fsync"](fd)

    def fake_mkdir(path: Any, mode: int = 0o777, *, dir_fd: int | None = None) -> None:
        if under(path, objects) and os.path.abspath(os.fspath(path)) != objects:
            fault.hit("shard-mkdir", str(path))
        real["mkdir"](path, mode, dir_fd=dir_fd)

    def fake_link(src: Any, dst: Any, **kwargs: Any) -> None:
        if under(dst, objects):
            fault.hit("link", str(dst))
        real["link"](src, dst, **kwargs)

    def fake_replace(src: Any, dst: Any, **kwargs: Any) -> None:
        if under(dst, objects):
            fault.hit("replace", str(dst))
        real["replace"](src, dst, **kwargs)

    def fake_remove(path: Any, **kwargs: Any) -> None:
        if under(path, tmp):
            fault.hit("tmp-remove", str(path))
        real["remove"](path, **kwargs)

    fakes: dict[str, Callable[..., Any]] = {
        "open": fake_open,
        "fdopen": fake_fdopen,
        "write": fake_write,
        "fsync": fake_fsync,
        "mkdir": fake_mkdir,
        "link": fake_link,
        "replace": fake_replace,
        "remove": fake_remove,
    }
    with contextlib.ExitStack() as stack:
        for name, fake in fakes.items():
            stack.enter_context(mock.patch.object(os, name, fake))
        yield fault


# ---- database faults -----------------------------------------------------------------------------

# The kinds of write transaction the engine makes, told apart by their first statement.
DB_SITES: dict[str, Callable[[str], bool]] = {
    "run": lambda sql: sql.startswith(("INSERT INTO environments", "INSERT INTO runs")),  # a run's row
    "abandon": lambda sql: sql.startswith("UPDATE runs SET status") and "COALESCE(heartbeat_at" in sql,  # stale runs
    "claim": lambda sql: sql.startswith("INSERT INTO leases"),  # an attempt and its lease, in one transaction
    "commit": lambda sql: sql.startswith(  # a result, fenced by its lease
        ("UPDATE leases SET expires_at = ? WHERE cache_key = ? AND token = ? AND", "INSERT INTO materializations")
    ),
    "end-attempt": lambda sql: sql.startswith("UPDATE attempts SET status") and "error = ? WHERE" in sql,
    "steps": lambda sql: sql.startswith("INSERT INTO steps"),  # batched step records
    "logs": lambda sql: sql.startswith("INSERT INTO logs"),  # captured log lines
    "heartbeat": lambda sql: sql.startswith("UPDATE runs SET heartbeat_at"),  # the run's heartbeat
    "renew": lambda sql: sql.startswith("UPDATE leases SET expires_at = ("),  # leases of running attempts
    # a run's final status (the same statement abandons one run whose engine is gone)
    "finish": lambda sql: sql.startswith("UPDATE runs SET status") and "WHERE run_id = ? AND status = ?" in sql,
    # every write: with a large `times`, a disk that stays full from the n-th write on
    "any": lambda sql: sql.startswith(("INSERT", "UPDATE", "DELETE")),
}
DB_ERRORS = {"full": ("database or disk is full", 13), "ioerr": ("disk I/O error", 10)}


@dataclass
class DbFault:
    """The n-th transaction of kind `site` fails at its first statement (`at="statement"`) or at its COMMIT;
    so do the next `times - 1` ones."""

    site: str
    nth: int
    error: str
    at: str = "statement"
    times: int = 1
    seen: int = 0
    raised: int = 0

    def exception(self) -> sqlite3.OperationalError:
        message, code = DB_ERRORS[self.error]
        exc = sqlite3.OperationalError(message)
        exc.sqlite_errorcode = code
        exc.sqlite_errorname = "SQLITE_FULL" if code == 13 else "SQLITE_IOERR"
        return exc


def _cursor_class(fault: DbFault) -> type[sqlite3.Cursor]:
    class FaultyCursor(sqlite3.Cursor):
        """Counts the transactions of the fault's kind and fails the chosen one."""

        in_transaction = False  # between BEGIN and COMMIT / ROLLBACK
        first = False  # the next statement is the transaction's first
        chosen = False  # the current transaction is the one that fails

        def _check(self, sql: str) -> None:
            if sql.startswith("BEGIN"):
                self.in_transaction, self.first, self.chosen = True, True, False
                return
            if sql in ("COMMIT", "ROLLBACK"):
                chosen, self.in_transaction, self.chosen = self.chosen, False, False
                if chosen and sql == "COMMIT" and fault.at == "commit":
                    self._raise()
                return
            if self.in_transaction and not self.first:
                return
            self.first = False
            if DB_SITES[fault.site](sql):
                fault.seen += 1
                if fault.nth <= fault.seen < fault.nth + fault.times:
                    self.chosen = True
                    if fault.at == "statement" or not self.in_transaction:
                        self._raise()

        def _raise(self) -> None:
            fault.raised += 1
            raise fault.exception()

        def execute(self, sql: str, parameters: Any = (), /) -> Self:
            self._check(sql)
            return super().execute(sql, parameters)

        def executemany(self, sql: str, parameters: Any, /) -> Self:
            self._check(sql)
            return super().executemany(sql, parameters)

    return FaultyCursor


@contextlib.contextmanager
def sqlite_faults(
    db_path: Path, site: str, nth: int = 1, error: str = "full", at: str = "statement", times: int = 1
) -> Iterator[DbFault]:
    """Make connections to `db_path` opened in this process fail the n-th transaction of kind `site` (see
    `DB_SITES`) with SQLite's disk-full (``error="full"``) or I/O error (``"ioerr"``)."""
    assert site in DB_SITES and error in DB_ERRORS and at in ("statement", "commit"), (site, error, at)
    fault = DbFault(site, nth, error, at, times)
    cursor_class = _cursor_class(fault)

    class FaultyConnection(sqlite3.Connection):
        def cursor(self, factory: Any = None) -> Any:
            return super().cursor(factory or cursor_class)

    real_connect = sqlite3.connect
    target = os.path.abspath(db_path)

    def connect(database: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        if isinstance(database, str | os.PathLike) and os.path.abspath(os.fspath(database)) == target:
            kwargs["factory"] = FaultyConnection
        connection: sqlite3.Connection = real_connect(database, *args, **kwargs)
        return connection

    with mock.patch.object(sqlite3, "connect", connect):
        yield fault
