"""Code versions of real projects on disk: an ordinary edit anywhere in the code an asset uses makes it stale.

Each test materializes a project, edits its module the way a user would, and checks through the command line
(in a subprocess, with the code cache of `.cairn/`) or `cairn.materialize` that the asset runs again and that
the stored value is the new one.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import cairn
from cairn.core.fingerprint import AST_FORMAT
from cairn.project import CODE_CACHE, load_project
from tests.conftest import ProjectFactory, cli, set_pipeline


@pytest.fixture(autouse=True)
def _forget_pipeline_module() -> Iterator[None]:
    yield
    sys.modules.pop("pipeline", None)


def plan_of(root: Path) -> dict[str, str]:
    planned = cli("-C", str(root), "plan", "--json")
    assert planned.returncode == 0, planned.stderr
    return {s["asset"]: s["action"] + ": " + s["reason"] for s in json.loads(planned.stdout)["steps"]}


def run_and_load(root: Path, name: str) -> object:
    done = cli("-C", str(root), "run")
    assert done.returncode == 0, done.stderr
    return cairn.load(name, project=root)


DECORATED = """
import functools
import time

import cairn


def timed(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            time.perf_counter() - start

    return wrapper


@cairn.asset
@timed
def answer():
    return 41
"""


def test_editing_the_body_of_a_decorated_asset_makes_it_stale(make_project: ProjectFactory) -> None:
    root = make_project(DECORATED)
    assert run_and_load(root, "answer") == 41
    assert plan_of(root) == {"answer": "cached: cached"}

    set_pipeline(root, DECORATED.replace("return 41", "return 42"))
    assert plan_of(root)["answer"].startswith("run: code changed: answer")
    assert run_and_load(root, "answer") == 42


def test_editing_the_decorator_makes_the_asset_stale(make_project: ProjectFactory) -> None:
    root = make_project(DECORATED)
    assert run_and_load(root, "answer") == 41
    set_pipeline(root, DECORATED.replace("return fn(*args, **kwargs)", "return fn(*args, **kwargs) + 1"))
    assert plan_of(root)["answer"] == "run: code changed: answer → wrapper"
    assert run_and_load(root, "answer") == 42


def test_a_comment_or_docstring_in_a_decorated_asset_keeps_it_cached(make_project: ProjectFactory) -> None:
    root = make_project(DECORATED)
    assert run_and_load(root, "answer") == 41
    set_pipeline(root, DECORATED.replace("    return 41", '    """The answer."""\n    # comment\n    return (41)'))
    assert plan_of(root) == {"answer": "cached: cached"}


INDIRECT = """
import functools

import cairn


class Scaler:
    def apply(self, x):
        return x * 2


SCALER = Scaler()


def double(x):
    return x * 2


REGISTRY = {"fn": double}
PIPELINE = [double]


@functools.lru_cache(maxsize=None)
def memo(x):
    return x * 2


def scale(x, factor):
    return x * factor


TRIPLE = functools.partial(scale, factor=3)


@cairn.asset
def through_instance():
    return SCALER.apply(1)


@cairn.asset
def through_dict():
    return REGISTRY["fn"](1)


@cairn.asset
def through_list():
    return PIPELINE[0](1)


@cairn.asset
def through_lru_cache():
    return memo(1)


@cairn.asset
def through_partial():
    return TRIPLE(1)
"""

EDITS = {
    "through_instance": (
        "class Scaler:\n    def apply(self, x):\n        return x * 2",
        "class Scaler:\n    def apply(self, x):\n        return x * 5",
    ),
    "through_dict": ("def double(x):\n    return x * 2", "def double(x):\n    return x * 5"),
    "through_lru_cache": ("def memo(x):\n    return x * 2", "def memo(x):\n    return x * 5"),
    "through_partial": ("factor=3", "factor=5"),
}


@pytest.mark.parametrize("edited", sorted(EDITS))
def test_editing_a_helper_reached_indirectly_makes_exactly_its_users_stale(
    make_project: ProjectFactory, edited: str
) -> None:
    root = make_project(INDIRECT)
    assert cairn.materialize(project=root).status == "succeeded"
    old, new = EDITS[edited]
    assert INDIRECT.count(old) == 1
    set_pipeline(root, INDIRECT.replace(old, new))
    stale = {name for name, action in plan_of(root).items() if action.startswith("run")}
    users = {"through_dict", "through_list"} if edited == "through_dict" else {edited}
    assert stale == users
    result = cairn.materialize(project=root)
    assert {s.asset for s in result.steps if s.status == "executed"} == users
    assert cairn.load(edited, project=root) == 5


CONSTANT = """
import cairn

THRESHOLD = 0.5


@cairn.asset
def clean():
    return [x for x in (0.1, 0.6, 0.9) if x > THRESHOLD]
"""


def test_a_changed_constant_is_named_in_the_reason(make_project: ProjectFactory) -> None:
    root = make_project(CONSTANT)
    assert run_and_load(root, "clean") == [0.6, 0.9]
    set_pipeline(root, CONSTANT.replace("THRESHOLD = 0.5", "THRESHOLD = 0.8"))
    assert plan_of(root) == {"clean": "run: code changed: clean → THRESHOLD"}
    why = cli("-C", str(root), "why", "clean")
    assert "code changed: clean → THRESHOLD" in why.stdout, why.stdout
    assert run_and_load(root, "clean") == [0.9]


def test_code_cache_parts_of_an_older_format_are_not_reused(make_project: ProjectFactory) -> None:
    root = make_project(CONSTANT)
    load_project(root).save_code_cache()  # nothing computed yet: nothing written
    project = load_project(root)
    asset = project.graph.assets["clean"]
    version, _ = project.code(asset)
    project.save_code_cache()
    cache = root / ".cairn" / CODE_CACHE
    stored = json.loads(cache.read_text(encoding="utf-8"))
    assert stored["format"] == AST_FORMAT
    for entries in stored["files"].values():  # corrupt every part, then mark the file as an older format
        for place in entries:
            entries[place] = ["b3:bogus", []]
    cache.write_text(json.dumps({**stored, "format": AST_FORMAT - 1}), encoding="utf-8")
    sys.modules.pop("pipeline", None)
    reloaded = load_project(root)
    assert reloaded.code(reloaded.graph.assets["clean"])[0] == version


OPAQUE = """
import socket

import cairn


class Client:
    def __init__(self):
        self.sock = socket.socket()

    def fetch(self):
        return 1


CLIENT = Client()


@cairn.asset
def remote():
    return CLIENT.fetch()


@cairn.asset
def local():
    return 2
"""


def test_why_names_a_value_that_is_not_fingerprinted(make_project: ProjectFactory) -> None:
    root = make_project(OPAQUE)
    why = cli("-C", str(root), "why", "remote")
    assert why.returncode == 0, why.stderr
    assert (
        "not fingerprinted: pipeline.CLIENT (an instance of pipeline.Client holding a socket.socket); "
        "its changes are not seen"
    ) in why.stdout
    data = json.loads(cli("-C", str(root), "why", "remote", "--json").stdout)
    assert data["not_fingerprinted"] == [
        {"name": "pipeline.CLIENT", "what": "an instance of pipeline.Client holding a socket.socket"}
    ]
    assert "not fingerprinted" not in cli("-C", str(root), "why", "local").stdout


def test_strict_code_makes_an_unfingerprinted_value_a_definition_error(make_project: ProjectFactory) -> None:
    root = make_project(OPAQUE, extra="[engine]\nstrict_code = true\n")
    planned = cli("-C", str(root), "plan")
    assert planned.returncode == 2
    assert "asset 'remote' reads pipeline.CLIENT" in planned.stderr
    assert "code_version=" in planned.stderr and "local" not in planned.stderr


def test_strict_code_accepts_ordinary_projects(make_project: ProjectFactory) -> None:
    root = make_project(INDIRECT + DECORATED.replace("import cairn", ""), extra="[engine]\nstrict_code = true\n")
    assert cli("-C", str(root), "plan").returncode == 0


def test_strict_code_with_a_code_version_is_accepted(make_project: ProjectFactory) -> None:
    pinned = OPAQUE.replace("@cairn.asset\ndef remote", '@cairn.asset(code_version="v1")\ndef remote')
    root = make_project(pinned, extra="[engine]\nstrict_code = true\n")
    assert cli("-C", str(root), "plan").returncode == 0


def test_a_misspelled_strict_code_key_suggests_the_right_one(make_project: ProjectFactory) -> None:
    root = make_project(CONSTANT, extra="[engine]\nstrict_cod = true\n")
    planned = cli("-C", str(root), "plan")
    assert planned.returncode == 2
    assert "unknown key 'strict_cod' in [engine]. Did you mean 'strict_code'?" in planned.stderr


def test_strict_code_must_be_a_boolean(make_project: ProjectFactory) -> None:
    root = make_project(CONSTANT, extra='[engine]\nstrict_code = "yes"\n')
    planned = cli("-C", str(root), "plan")
    assert planned.returncode == 2
    assert "[engine] strict_code must be true or false" in planned.stderr
