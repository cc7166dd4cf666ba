"""Property tests of the engine over random DAGs: caching, early cutoff, failures, executors, stable keys.

Each example writes a fresh project whose module has one function per asset::

    @cairn.asset(name="n3", params={"p": 4, ...}, ins={"x0": "n0", "x1": "n2"})
    def f_n3(ctx, x0, x1):
        total = x0["v"] + x1["v"]
        return {"v": (min(total, 1) * 31 + ctx.params["p"] + 17 + len(TAGS)) % MOD}

The same formula is evaluated in pure Python (`evaluate`), so every expectation (which steps run after a
change, the stored values) is computed independently of cairn. Some operations ignore all or part of their
inputs' values (``min(total, 1)``, ``total % 2``, ``0``), so that early cutoff happens in some examples.

An asset's constant is written in one of several styles (`STYLES`), so that a change of it is an edit of
code the asset reaches only indirectly: under a ``functools.wraps`` decorator, in a method of a
module-level instance (``CONST_n3.value()``), or in a function stored in a module-level dict
(``REGISTRY_n3["const"]()``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

import cairn
from cairn.engine.results import RunResult

MOD = 1_000_003
TAGS = frozenset({"alpha", "beta", "gamma", "delta"})

# op name -> (the expression in the generated module, the same function in Python)
OPS: dict[str, tuple[str, Callable[[int], int]]] = {
    "sum": ("total", lambda total: total),
    "clamp": ("min(total, 1)", lambda total: min(total, 1)),
    "parity": ("total % 2", lambda total: total % 2),
    "ignore": ("0", lambda total: 0),
}

# How a node's constant reaches its asset (see `render`).
STYLES = ("plain", "decorated", "instance", "registry")

PROPERTY_SETTINGS = settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@dataclass(frozen=True)
class Node:
    """One asset of a generated pipeline."""

    name: str
    inputs: tuple[str, ...]
    op: str
    param: int
    const: int
    fails: bool = False
    salt: int = 0
    style: str = "plain"


Dag = tuple[Node, ...]


@st.composite
def dags(draw: st.DrawFn, min_nodes: int = 2, max_nodes: int = 12) -> Dag:
    """A random DAG: node i reads 0-3 of the nodes before it."""
    count = draw(st.integers(min_nodes, max_nodes), label="nodes")
    nodes = []
    for i in range(count):
        picked = draw(st.lists(st.integers(0, i - 1), max_size=min(3, i), unique=True)) if i else []
        nodes.append(
            Node(
                name=f"n{i}",
                inputs=tuple(f"n{j}" for j in sorted(picked)),
                op=draw(st.sampled_from(sorted(OPS))),
                param=draw(st.integers(0, 50)),
                const=draw(st.integers(0, 999)),
                style=draw(st.sampled_from(STYLES)),
            )
        )
    return tuple(nodes)


def render(dag: Dag, cosmetic: bool = False) -> str:
    """The text of a pipeline module for `dag` (one function per asset).

    With `cosmetic`, the same code written differently: docstrings, comments, parentheses and spacing
    that a code version must ignore.
    """
    out = [
        '"""A generated pipeline."""',
        "",
        *(["# Reformatted: nothing below changes what any function computes.", ""] if cosmetic else []),
        "import functools",
        "",
        "import cairn",
        "",
        f"MOD = {MOD}",
        f"TAGS = frozenset({sorted(TAGS)!r})",
        "",
        "",
        "def timed(fn):",
        *(['    """A wrapper that a code version must see through."""'] if cosmetic else []),
        "    @functools.wraps(fn)",
        "    def wrapper(*args, **kwargs):",
        "        return fn(*args, **kwargs)",
        "",
        "    return wrapper",
        "",
        "",
    ]
    for node in dag:
        out += _const_helper(node, cosmetic)
        args = ["ctx", *(f"x{j}" for j in range(len(node.inputs)))]
        ins = {f"x{j}": name for j, name in enumerate(node.inputs)}
        params = {"p": node.param, "zeta": [node.param, 2], "alpha": {"y": 1, "x": node.const}}
        total = " + ".join(f'x{j}["v"]' for j in range(len(node.inputs))) or "0"
        if cosmetic:
            total = "(" + "  +  ".join(f"x{j}['v']" for j in range(len(node.inputs))) + ")" if node.inputs else "(0)"
        out += [
            f"@cairn.asset(name={node.name!r}, params={params!r}, ins={ins!r})",
            *(["@timed"] if node.style == "decorated" else []),
            f"def f_{node.name}({', '.join(args)}):",
            *([f'    """Compute {node.name} ({node.op})."""', "    # the sum of the inputs"] if cosmetic else []),
            *([f'    raise RuntimeError("injected failure in {node.name}")'] if node.fails else []),
            f"    total = {total}",
            f"    salt = {node.salt}  # code that does not change the value",
            f'    return {{"v": ({OPS[node.op][0]} * 31 + ctx.params["p"] + {_const_expr(node)} + len(TAGS)) % MOD}}',
            "",
            "",
        ]
    return "\n".join(out)


def _const_expr(node: Node) -> str:
    if node.style == "instance":
        return f"CONST_{node.name}.value()"
    if node.style == "registry":
        return f'REGISTRY_{node.name}["const"]()'
    return str(node.const)


def _const_helper(node: Node, cosmetic: bool) -> list[str]:
    """The module-level code that holds a node's constant in the "instance" and "registry" styles."""
    doc = ['        """The constant."""'] if cosmetic else []
    if node.style == "instance":
        return [
            f"class Const_{node.name}:",
            "    def value(self):",
            *doc,
            f"        return {node.const}",
            "",
            "",
            f"CONST_{node.name} = Const_{node.name}()",
            "",
            "",
        ]
    if node.style == "registry":
        return [
            f"def const_{node.name}():",
            *[line[4:] for line in doc],
            f"    return {node.const}",
            "",
            "",
            f'REGISTRY_{node.name} = {{"const": const_{node.name}}}',
            "",
            "",
        ]
    return []


def evaluate(dag: Dag) -> dict[str, int]:
    """Each node's value, computed in pure Python with the formula of `render`."""
    values: dict[str, int] = {}
    for node in dag:
        total = sum(values[name] for name in node.inputs)
        values[node.name] = (OPS[node.op][1](total) * 31 + node.param + node.const + len(TAGS)) % MOD
    return values


def descendants(dag: Dag, name: str) -> set[str]:
    found: set[str] = set()
    for node in dag:  # topological order: a node's inputs come before it
        if name in node.inputs or found.intersection(node.inputs):
            found.add(node.name)
    return found


def changed_inputs(dag: Dag, before: Mapping[str, int], after: Mapping[str, int]) -> set[str]:
    """Nodes with at least one input whose value differs between two evaluations."""
    return {n.name for n in dag if any(before[i] != after[i] for i in n.inputs)}


def with_node(dag: Dag, index: int, **changes: Any) -> Dag:
    return tuple(replace(node, **changes) if i == index else node for i, node in enumerate(dag))


# ---- projects ----------------------------------------------------------------------------------


def write_module(root: Path, module: str, text: str) -> None:
    """(Re)write the pipeline module; its mtime moves at least 2 s past the previous one.

    Python's bytecode cache compares whole seconds of the source's mtime (and its size), so a rewrite with
    the same length within one second would otherwise run the old code.
    """
    path = root / f"{module}.py"
    previous = path.stat().st_mtime if path.exists() else 0.0
    path.write_text(text, encoding="utf-8")
    stamp = max(time.time(), previous + 2.0)
    os.utime(path, (stamp, stamp))


@contextmanager
def project(
    text: str, executor: str = "process", start: str = "fork", address: str | None = None
) -> Iterator[tuple[Path, str]]:
    """A throwaway project folder holding `text` as its module; yields ``(folder, module name)``.

    `address` is the cluster of the dask or ray executor (none: the executor starts its own).

    Each project gets its own module name, and the test process forgets it afterwards, so that
    examples never see each other's modules.
    """
    module = f"dagpipe_{uuid.uuid4().hex[:12]}"
    with tempfile.TemporaryDirectory(prefix="cairn-prop-") as tmp:
        root = Path(tmp).resolve()
        (root / "cairn.toml").write_text(
            textwrap.dedent(
                f"""\
                [project]
                name = "props"
                modules = ["{module}"]
                seed = 11

                [storage]
                artifacts = ".cairn/artifacts"
                database = "sqlite:///.cairn/cairn.db"

                [executor]
                kind = "{executor}"
                workers = 2
                start = "{start}"
                {f'address = "{address}"' if address else ""}

                [defaults]
                retry = {{ max_attempts = 1 }}
                """
            ),
            encoding="utf-8",
        )
        write_module(root, module, text)
        try:
            yield root, module
        finally:
            sys.modules.pop(module, None)
            while str(root) in sys.path:
                sys.path.remove(str(root))


def run(root: Path, **options: Any) -> RunResult:
    return cairn.materialize(project=root, **options)


def statuses(result: RunResult) -> dict[str, str]:
    return {step.asset: step.status for step in result.steps}


def expect(dag: Dag, default: str, **groups: set[str]) -> dict[str, str]:
    """The expected status of every node: `default` unless named in one of the groups."""
    out = {node.name: default for node in dag}
    for status, names in groups.items():
        out.update(dict.fromkeys(names, status))
    return out


def assert_values(root: Path, expected: Mapping[str, int]) -> None:
    stored = {name: cairn.load(name, project=root) for name in expected}
    assert stored == {name: {"v": value} for name, value in expected.items()}


# ---- properties --------------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(dags())
def test_a_rerun_without_changes_executes_nothing(dag: Dag) -> None:
    with project(render(dag)) as (root, _):
        first = run(root)
        assert first.status == "succeeded"
        assert statuses(first) == expect(dag, "executed")
        assert all(step.attempts == 1 for step in first.steps)
        assert_values(root, evaluate(dag))

        second = run(root)
        assert second.status == "succeeded"
        assert statuses(second) == expect(dag, "cached")
        assert second.count("executed") == 0
        assert {s.asset: (s.cache_key, s.data_version) for s in second.steps} == {
            s.asset: (s.cache_key, s.data_version) for s in first.steps
        }


@PROPERTY_SETTINGS
@given(dags())
def test_comments_docstrings_and_formatting_do_not_change_any_cache_key(dag: Dag) -> None:
    with project(render(dag)) as (root, module):
        first = run(root)
        assert first.status == "succeeded"
        write_module(root, module, render(dag, cosmetic=True))
        second = run(root)
        assert statuses(second) == expect(dag, "cached")
        assert [s.cache_key for s in second.steps] == [s.cache_key for s in first.steps]


CHANGE_KINDS = ("const", "salt", "param")


@st.composite
def changes(draw: st.DrawFn) -> tuple[Dag, int, str, int]:
    """A DAG, a node, and how that node changes: its value's constant, dead code (`salt`) or its param."""
    dag = draw(dags())
    index = draw(st.integers(0, len(dag) - 1), label="changed node")
    return dag, index, draw(st.sampled_from(CHANGE_KINDS), label="kind"), draw(st.integers(1, 5), label="delta")


# n0 --> n1 = clamp(n0) --> n2: a change of n0 re-executes n1, whose value stays 1*31+..., so n2 stays cached.
CUTOFF_CHAIN = (
    Node("n0", (), "sum", 3, 10),
    Node("n1", ("n0",), "clamp", 4, 20),
    Node("n2", ("n1",), "sum", 5, 30),
)
# Each constant reached indirectly: a change of n1's or n2's constant is an edit of a method or a dict entry.
STYLED_CHAIN = (
    Node("n0", (), "sum", 3, 10, style="decorated"),
    Node("n1", ("n0",), "sum", 4, 20, style="instance"),
    Node("n2", ("n1",), "sum", 5, 30, style="registry"),
    Node("n3", ("n0", "n2"), "sum", 6, 40, style="decorated"),
)


@PROPERTY_SETTINGS
@given(changes())
@example((CUTOFF_CHAIN, 0, "const", 1))
@example((CUTOFF_CHAIN, 0, "param", 2))
@example((CUTOFF_CHAIN, 0, "salt", 1))
@example((STYLED_CHAIN, 0, "const", 1))
@example((STYLED_CHAIN, 1, "const", 2))
@example((STYLED_CHAIN, 2, "const", 3))
@example((STYLED_CHAIN, 3, "salt", 1))
def test_a_change_executes_that_asset_and_the_descendants_whose_inputs_changed(
    change: tuple[Dag, int, str, int],
) -> None:
    """Early cutoff: a descendant whose input values are unchanged stays cached, even below a re-executed step."""
    dag, index, kind, delta = change
    node = dag[index]
    changed = with_node(dag, index, **{kind: getattr(node, kind) + delta})
    before, after = evaluate(dag), evaluate(changed)
    expected_runs = {node.name} | changed_inputs(dag, before, after)
    assert expected_runs <= {node.name} | descendants(dag, node.name)  # a sanity check of the model
    if expected_runs != {node.name} | descendants(dag, node.name):
        event("early cutoff below a re-executed step")
    overrides = {node.name: {"p": changed[index].param}} if kind == "param" else {}

    with project(render(dag)) as (root, module):
        assert run(root).status == "succeeded"
        if kind != "param":
            write_module(root, module, render(changed))
        result = run(root, params=overrides)
        assert result.status == "succeeded"
        assert statuses(result) == expect(dag, "cached", executed=expected_runs)
        assert result[node.name].reason.startswith("param changed" if kind == "param" else "code changed")
        for name in expected_runs - {node.name}:
            assert result[name].reason.startswith("input changed"), (name, result[name].reason)
        assert_values(root, after)

        again = run(root, params=overrides)
        assert statuses(again) == expect(dag, "cached")


@st.composite
def failures(draw: st.DrawFn) -> tuple[Dag, int]:
    dag = draw(dags())
    return dag, draw(st.integers(0, len(dag) - 1), label="failing node")


@PROPERTY_SETTINGS
@given(failures())
def test_a_failing_asset_fails_alone_skips_its_descendants_and_a_fixed_rerun_runs_only_those(
    case: tuple[Dag, int],
) -> None:
    dag, index = case
    bad = dag[index].name
    below = descendants(dag, bad)
    with project(render(with_node(dag, index, fails=True))) as (root, module):
        broken = run(root)
        assert broken.status == "failed"
        assert statuses(broken) == expect(dag, "executed", failed={bad}, skipped=below)
        assert f"injected failure in {bad}" in (broken[bad].error or "")
        assert broken[bad].data_version is None
        for name in below:
            assert broken[name].reason.startswith("upstream failed"), broken[name].reason

        write_module(root, module, render(dag))
        fixed = run(root)
        assert fixed.status == "succeeded"
        assert statuses(fixed) == expect(dag, "cached", executed={bad} | below)
        assert_values(root, evaluate(dag))


@PROPERTY_SETTINGS
@given(failures())
def test_reverting_a_broken_change_makes_the_earlier_results_fresh_again(case: tuple[Dag, int]) -> None:
    """A failed attempt publishes nothing, and the restored code has the old cache keys."""
    dag, index = case
    bad = dag[index].name
    with project(render(dag)) as (root, module):
        first = run(root)
        write_module(root, module, render(with_node(dag, index, fails=True)))
        broken = run(root)
        assert broken.status == "failed"
        assert statuses(broken) == expect(dag, "cached", failed={bad}, skipped=descendants(dag, bad))

        write_module(root, module, render(dag))
        restored = run(root)
        assert restored.status == "succeeded"
        assert statuses(restored) == expect(dag, "cached")
        assert [s.cache_key for s in restored.steps] == [s.cache_key for s in first.steps]


@PROPERTY_SETTINGS
@given(dags())
def test_inline_thread_and_process_executors_store_identical_data_versions(dag: Dag) -> None:
    """Three (four) separate folders with the same pipeline text; process workers both forked and spawned."""
    text = render(dag)
    versions = {}
    for executor, start in (("inline", "fork"), ("thread", "fork"), ("process", "fork"), ("process", "spawn")):
        with project(text, executor=executor, start=start) as (root, _):
            result = run(root)
            assert result.status == "succeeded", executor
            assert statuses(result) == expect(dag, "executed")
            versions[f"{executor}/{start}"] = {s.asset: s.data_version for s in result.steps}
            assert_values(root, evaluate(dag))
    first = versions["inline/fork"]
    assert all(found == first for found in versions.values()), versions
    assert len(set(first.values())) == len(set(evaluate(dag).values()))


def plan_in_subprocess(root: Path, hash_seed: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    return subprocess.Popen(
        [sys.executable, "-m", "cairn.cli.main", "-C", str(root), "plan", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@settings(PROPERTY_SETTINGS, max_examples=5)
@given(dags())
def test_cache_keys_are_identical_across_processes_and_hash_seeds(dag: Dag) -> None:
    """The module reads a frozenset constant and params hold nested dicts: both must hash canonically."""
    with project(render(dag)) as (root, _):
        result = run(root)
        assert result.status == "succeeded"
        in_process = {s.asset: s.cache_key for s in result.steps}
        assert all(key and key.startswith("b3:") for key in in_process.values())

        procs = {seed: plan_in_subprocess(root, seed) for seed in ("0", "1", "12345", "random")}
        plans = {}
        for seed, proc in procs.items():
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            plans[seed] = json.loads(out)
        for seed, planned in plans.items():
            assert planned["to_run"] == 0, seed
            assert {s["asset"]: s["action"] for s in planned["steps"]} == dict.fromkeys(in_process, "cached")
            assert {s["asset"]: s["cache_key"] for s in planned["steps"]} == in_process, seed


def test_two_projects_with_the_same_module_name_each_run_their_own_assets() -> None:
    """Loading a second project in one process must not reuse the first project's module of that name."""
    with tempfile.TemporaryDirectory(prefix="cairn-two-") as tmp:
        roots = []
        for name, asset_name in (("first", "alpha"), ("second", "beta")):
            root = Path(tmp, name).resolve()
            root.mkdir()
            (root / "cairn.toml").write_text(
                '[project]\nname = "twin"\nmodules = ["pipeline"]\n[executor]\nkind = "inline"\n', encoding="utf-8"
            )
            write_module(root, "pipeline", f"import cairn\n\n\n@cairn.asset\ndef {asset_name}():\n    return 1\n")
            roots.append(root)
        try:
            first = run(roots[0])
            second = run(roots[1])
            assert [s.asset for s in first.steps] == ["alpha"]
            assert [s.asset for s in second.steps] == ["beta"]
            assert [s.asset for s in run(roots[0]).steps] == ["alpha"]
        finally:
            sys.modules.pop("pipeline", None)
            for root in roots:
                while str(root) in sys.path:
                    sys.path.remove(str(root))
