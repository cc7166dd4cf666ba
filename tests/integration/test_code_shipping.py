"""Code shipped to cluster workers: a run passes on workers that cannot see the project's folder at all.

The Dask workers here are separate `dask worker` processes started in another folder, with no entry of the
project on sys.path, and a preload that hides the project's folder from them: an audit hook refuses every
open, listing or chdir of a path under it (as on another machine, where that path does not exist). They reach
the artifact store at its shared path. So a run succeeds only with the code the executor shipped, and the
control run (shipping switched off) fails reading cairn.toml. Ray (slow: it starts in many seconds here) runs
the same project with the same hook installed in every worker process by ``worker_process_setup_hook``.

The package itself (`cairn.executors.shipping`) is checked without a cluster first: deterministic bytes named by
content, what it holds, safe unpacking, and which folder a worker loads the project from.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import textwrap
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import cairn
from cairn.executors import shipping
from tests.integration.test_properties import write_module

# ---- the package, without a cluster -----------------------------------------------------------------


def _project(root: Path, module: str, body: str, extra: str = "") -> Path:
    """A project whose module imports a helper package of its own (`<module>_lib.features`)."""
    root.mkdir(parents=True, exist_ok=True)
    config = f'[project]\nname = "shipped"\nmodules = ["{module}"]\nseed = 5\n{extra}'
    (root / "cairn.toml").write_text(config, encoding="utf-8")
    lib = root / f"{module}_lib"
    lib.mkdir(exist_ok=True)
    (lib / "__init__.py").write_text("", encoding="utf-8")
    (lib / "features.py").write_text("SCALE = 3\n\n\ndef scaled(x):\n    return x * SCALE\n", encoding="utf-8")
    write_module(root, module, textwrap.dedent(body))
    return root


PIPELINE = """\
import os
import sys

import cairn
from {module}_lib.features import scaled

HERE = os.path.dirname(os.path.abspath(__file__))


@cairn.asset
def where(ctx):
    return {{"file": os.path.abspath(__file__), "cwd": os.getcwd(), "pid": os.getpid()}}


@cairn.asset
def value(ctx):
    return scaled({n})


@cairn.asset
def total(value, where):
    return value + 1
"""


@pytest.fixture
def forget_modules() -> Iterator[None]:
    before_modules, before_path = set(sys.modules), list(sys.path)
    yield
    for name in set(sys.modules) - before_modules:
        if name.startswith("ship_"):
            del sys.modules[name]
    sys.path[:] = before_path


def _loaded(root: Path, module: str, n: int = 1) -> None:
    """Write the project and import it here, as the engine does before it submits anything."""
    _project(root, module, PIPELINE.format(module=module, n=n))
    from cairn.project import load_project

    load_project(root)


def test_a_package_holds_cairn_toml_and_the_imported_modules_and_is_named_by_their_content(
    tmp_path: Path, forget_modules: None
) -> None:
    module = f"ship_{uuid.uuid4().hex[:8]}"
    root = tmp_path / "p"
    _loaded(root, module)
    (root / "notes.txt").write_text("not code", encoding="utf-8")
    (root / "unused.py").write_text("X = 1\n", encoding="utf-8")  # never imported: not shipped
    first = shipping.package_project(str(root))
    assert first is not None
    assert set(first.files) == {"cairn.toml", f"{module}.py", f"{module}_lib/__init__.py", f"{module}_lib/features.py"}
    again = shipping.package_project(str(root))
    assert again is not None and again.data == first.data and again.digest == first.digest
    with zipfile.ZipFile(io.BytesIO(first.data)) as archive:
        assert {i.date_time for i in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    (root / f"{module}_lib" / "features.py").write_text("SCALE = 4\n", encoding="utf-8")
    edited = shipping.package_project(str(root))
    assert edited is not None and edited.digest != first.digest and edited.slot == first.slot
    assert shipping.package_project(str(tmp_path)) is None  # no cairn.toml: no project


def test_a_package_unpacks_once_and_a_worker_loads_the_project_folder_only_when_it_holds_the_same_files(
    tmp_path: Path, forget_modules: None
) -> None:
    module = f"ship_{uuid.uuid4().hex[:8]}"
    root = tmp_path / "p"
    _loaded(root, module)
    package = shipping.package_project(str(root))
    assert package is not None
    local = shipping.unpack(package.data, str(tmp_path / "worker"))
    assert shipping.unpack(package.data, str(tmp_path / "worker")) == local
    assert (Path(local) / f"{module}_lib" / "features.py").read_text(encoding="utf-8").startswith("SCALE = 3")
    assert shipping.project_root(str(root)) == str(root)  # no job running with shipped code
    with shipping.running_from(local):
        assert shipping.project_root(str(root)) == str(root)  # the same files: the project's own folder
        assert shipping.project_root(str(tmp_path / "other")) == str(tmp_path / "other")
    (root / f"{module}.py").write_text("# edited after the run started\n", encoding="utf-8")
    shipping._same_files.clear()
    with shipping.running_from(local):
        assert shipping.project_root(str(root)) == local  # different files there: the shipped code


def test_a_package_with_a_path_that_leaves_its_folder_is_refused(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    manifest = '{"digest": "b3:00", "files": [], "project_dir": "/p"}'
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(shipping.MANIFEST, manifest)
        archive.writestr("../escaped.py", "X = 1\n")
    with pytest.raises(ValueError, match="unsafe path"):
        shipping.unpack(buffer.getvalue(), str(tmp_path / "worker"))
    assert not (tmp_path / "escaped.py").exists()
    assert [p.name for p in (tmp_path / "worker").iterdir()] == []


# ---- workers that cannot see the project ------------------------------------------------------------

HIDE = """\
# A dask preload and a Ray worker setup hook: this process runs elsewhere and cannot see the project folder.
import os
import sys

HIDDEN = {hidden!r}
ELSEWHERE = {elsewhere!r}
_EVENTS = {{"open", "os.listdir", "os.scandir", "os.chdir", "os.mkdir", "os.rename", "os.replace", "os.remove"}}


def _hidden(path):
    try:
        path = os.path.abspath(os.fsdecode(path))
    except (TypeError, ValueError):
        return False
    return path == HIDDEN or path.startswith(HIDDEN + os.sep)


def _deny(event, args):
    if event in _EVENTS and args and isinstance(args[0], (str, bytes, os.PathLike)) and _hidden(args[0]):
        raise PermissionError(13, "this worker cannot see the project folder", os.fsdecode(args[0]))


def hide():
    if getattr(sys, "_cairn_hidden", False):
        return
    sys._cairn_hidden = True
    os.chdir(ELSEWHERE)
    sys.path[:] = [p for p in sys.path if p not in ("", ".") and not _hidden(p)]
    sys.addaudithook(_deny)


def dask_setup(worker):
    hide()
"""


def _hide_script(tmp_path: Path, hidden: Path, elsewhere: Path) -> Path:
    script = tmp_path / "hide_project.py"
    script.write_text(HIDE.format(hidden=str(hidden), elsewhere=str(elsewhere)), encoding="utf-8")
    return script


def probes() -> tuple[Any, Any]:
    """Functions to run on a worker, made here: a nested function travels by value (the workers cannot import
    this test module)."""

    def read_config(path: str) -> str:
        try:
            with open(path, encoding="utf-8") as fh:
                return fh.read()[:10]
        except PermissionError:
            return "denied"

    def worker_state() -> dict[str, Any]:
        return {"cwd": os.getcwd(), "pid": os.getpid(), "path": list(sys.path)}

    return read_config, worker_state


@pytest.fixture
def hidden_dask(tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    """A scheduler here and two `dask worker` processes started elsewhere that cannot see ``tmp_path/p``."""
    distributed = pytest.importorskip("distributed")
    hidden, elsewhere = tmp_path / "p", tmp_path / "elsewhere"
    hidden.mkdir()
    elsewhere.mkdir()
    script = _hide_script(tmp_path, hidden, elsewhere)
    cluster = distributed.LocalCluster(
        n_workers=0, dashboard_address=None, scheduler_kwargs={"dashboard_address": ":0"}
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", cluster.scheduler_address, "--nthreads", "1",
             "--no-nanny", "--no-dashboard", "--preload", str(script), "--local-directory", str(elsewhere / f"w{i}")],
            cwd=elsewhere, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for i in range(2)
    ]  # fmt: skip
    try:
        with distributed.Client(cluster.scheduler_address, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=120)
        yield cluster.scheduler_address, hidden, elsewhere
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.wait(timeout=30)
        cluster.close()


def _cluster_project(root: Path, module: str, kind: str, address: str | None, n: int = 1) -> Path:
    store = root.parent / "shared-store"  # a shared path every worker reaches, outside the project folder
    extra = f'[storage]\nartifacts = "{store}"\n[executor]\nkind = "{kind}"\nworkers = 2\n'
    if address:
        extra += f'address = "{address}"\n'
    return _project(root, module, PIPELINE.format(module=module, n=n), extra)


def test_dask_workers_that_cannot_see_the_project_run_it_from_the_shipped_code(
    hidden_dask: tuple[str, Path, Path], forget_modules: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import distributed

    from cairn.executors.dask import DaskExecutor

    address, root, elsewhere = hidden_dask
    module = f"ship_{uuid.uuid4().hex[:8]}"
    _cluster_project(root, module, "dask", address)
    read_config, worker_state = probes()
    with distributed.Client(address, set_as_default=False) as client:
        assert set(client.run(read_config, str(root / "cairn.toml")).values()) == {"denied"}
        states = client.run(worker_state).values()
        assert all(s["cwd"] == str(elsewhere) for s in states)
        assert not any(p.startswith(str(root)) for s in states for p in s["path"])

    with monkeypatch.context() as off:  # the control: without the shipped code the workers cannot load it
        off.setattr(DaskExecutor, "_ship", lambda self, arg: None)
        control = cairn.materialize(project=root)
    assert control.status == "failed"
    assert "cannot see the project folder" in (control["value"].error or ""), control["value"].error

    result = cairn.materialize(project=root)
    assert result.ok, [s.error for s in result.steps if s.error]
    where = cairn.load("where", project=root)
    assert where["pid"] != os.getpid() and where["cwd"] == str(elsewhere)
    assert where["file"].startswith(str(elsewhere)) and "cairn-code" in where["file"]
    assert cairn.load("value", project=root) == 3 and cairn.load("total", project=root) == 4

    # A new code version is shipped with the next run, in the project's module and in its helper package.
    write_module(root, module, PIPELINE.format(module=module, n=2))
    features = root / f"{module}_lib" / "features.py"
    features.write_text("SCALE = 10\n\n\ndef scaled(x):\n    return x * SCALE\n", encoding="utf-8")
    later = time.time() + 5
    os.utime(features, (later, later))
    again = cairn.materialize(project=root)
    assert again.ok, [s.error for s in again.steps if s.error]
    assert {s.asset for s in again.steps if s.status == "executed"} == {"value", "total"}
    assert cairn.load("value", project=root) == 20 and cairn.load("total", project=root) == 21


@pytest.mark.slow
def test_ray_workers_that_cannot_see_the_project_run_it_from_the_shipped_code(
    tmp_path: Path, forget_modules: None
) -> None:
    ray = pytest.importorskip("ray")
    import importlib.util

    from cairn.executors.ray import _QUIET

    root, elsewhere = tmp_path / "p", tmp_path / "elsewhere"
    root.mkdir()
    elsewhere.mkdir()
    spec = importlib.util.spec_from_file_location("hide_project", _hide_script(tmp_path, root, elsewhere))
    assert spec is not None and spec.loader is not None
    hide = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hide)
    module = f"ship_{uuid.uuid4().hex[:8]}"
    _cluster_project(root, module, "ray", None)
    was_running = ray.is_initialized()
    if was_running:
        ray.shutdown()
    ray.init(address="local", num_cpus=2, runtime_env={"worker_process_setup_hook": hide.hide}, **_QUIET)
    try:
        read_config, _ = probes()
        assert ray.get(ray.remote(read_config).remote(str(root / "cairn.toml"))) == "denied"
        result = cairn.materialize(project=root)
        assert result.ok, [s.error for s in result.steps if s.error]
        where = cairn.load("where", project=root)
        assert where["pid"] != os.getpid() and where["cwd"] == str(elsewhere)
        assert "cairn-code" in where["file"] and not where["file"].startswith(str(root))
        assert cairn.load("total", project=root) == 4
    finally:
        ray.shutdown()
