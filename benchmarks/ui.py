"""The web UI's server time per request on a large project, and what the UI costs the CLI's start-up.

    python benchmarks/ui.py [--repeat N] [--assets A] [--runs R] [--keep]

Builds one project folder: a generated pipeline of A no-op assets (default 1,000: 20 layers of A/20, each
asset reading two of the layer before, as dag200.py's DAG), materialized once through `cairn run`; then R runs
(default 10,000) written straight through `MetadataStore.create_run` and `upsert_steps` (a finished run with
three steps each, an hour apart), which is what the runs list reads, far faster than executing them. A user
is added and its token set as the session cookie of a Starlette `TestClient` over `cairn.web.create_app`.

Per request (in this process, through the ASGI app: routing, the session check, the views, the templates;
the TestClient's own cost is the row of the static stylesheet), the median (min-max) over N repetitions
after one warm-up request: the graph page, the assets page, the runs list (newest 100, and filtered by
status), the runs API, one run's page (the real run, with A steps).

Start-up, each figure the median over 2N fresh interpreters (at least 10):

* `python -X importtime -c "import cairn.cli.main"` must not import fastapi, starlette, uvicorn or jinja2;
* `cairn --help` with the ui extra installed and with it absent (an import hook that refuses those four
  packages, as an environment without `cairn[ui]` would), and that `cairn ui` then names the extra;
* `python -c "import cairn.web.app"` (what `cairn ui` loads before serving) and `import uvicorn`, beside
  `import cairn` and a bare `python -c pass`.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common as C

from cairn.core.records import CACHED, EXECUTED, SUCCEEDED, RunRecord, StepRecord
from cairn.security import add_user
from cairn.storage.metadata import open_metadata

UI_PACKAGES = ("fastapi", "starlette", "uvicorn", "jinja2")
# The CLI started from `-c`, optionally with the ui extra's packages made unimportable first.
CLI_SNIPPET = """
import sys
if {absent!r}:
    class Absent:
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in {packages!r}:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            return None
    sys.meta_path.insert(0, Absent())
sys.argv = ["cairn", *sys.argv[1:]]
from cairn.cli.main import main
main()
"""


def pipeline(assets: int) -> str:
    """20 layers of `assets` / 20 no-op assets; each reads two assets of the layer before."""
    width = max(assets // 20, 1)
    lines = ["from cairn import asset", ""]
    for layer in range(-(-assets // width)):
        for i in range(min(width, assets - layer * width)):
            if layer == 0:
                lines += ["@asset", f"def n{layer}_{i}() -> int:", f"    return {i}", ""]
            else:
                a, b = f"n{layer - 1}_{i}", f"n{layer - 1}_{(i + 1) % width}"
                lines += ["@asset", f"def n{layer}_{i}({a}: int, {b}: int) -> int:", f"    return {a} + {b}", ""]
    return "\n".join(lines)


def build(root: Path, assets: int, runs: int) -> tuple[str, str]:
    """The project, materialized once, with `runs` recorded runs; returns a token and the real run's id."""
    C.write_project(root, "ui-bench", pipeline(assets), executor="inline")
    started = time.perf_counter()
    real = C.run([*C.MODULE_CLI, "-C", str(root), "run", "--json"]).check().json()
    assert real["status"] == "succeeded" and len(real["steps"]) == assets, real["status"]
    C.progress(f"materialized {assets:,} assets in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    with open_metadata("sqlite:///.cairn/cairn.db", root) as meta:
        token = add_user(meta, "admin", "admin", None)
        first = time.time() - runs * 3600.0
        for i in range(runs):
            run_id = f"20250101-000000-{i:06x}"
            at = first + i * 3600.0
            meta.create_run(RunRecord(run_id, SUCCEEDED, "n19_0", at, at + 1.5))
            meta.upsert_steps(
                [
                    StepRecord(run_id, "n0_0", "", CACHED, "cached", f"b3:k0-{i}", f"b3:d0-{i}", 0, None),
                    StepRecord(run_id, "n1_0", "", CACHED, "cached", f"b3:k1-{i}", f"b3:d1-{i}", 0, None),
                    StepRecord(run_id, "n19_0", "", EXECUTED, "param changed", f"b3:k2-{i}", f"b3:d2-{i}", 1, 1.2),
                ]
            )
    C.progress(f"recorded {runs:,} runs in {time.perf_counter() - started:.1f} s")
    return token, str(real["run_id"])


def serve(root: Path, token: str, routes: dict[str, str], repeat: int) -> dict[str, tuple[list[float], int]]:
    """Each route requested once to warm up, then `repeat` times: seconds per request and the body's size."""
    from fastapi.testclient import TestClient

    from cairn.web import create_app
    from cairn.web.auth import SESSION_COOKIE

    out: dict[str, tuple[list[float], int]] = {}
    with TestClient(create_app(root), follow_redirects=False) as client:
        client.cookies.set(SESSION_COOKIE, token)
        headers = {"Authorization": f"Bearer {token}"}
        for name, path in routes.items():
            C.progress(f"GET {path}")
            first = client.get(path, headers=headers)
            assert first.status_code == 200, (path, first.status_code, first.text[:500])
            times = []
            for _ in range(repeat):
                seconds, answer = C.timed(lambda path=path: client.get(path, headers=headers))
                assert answer.status_code == 200
                times.append(seconds)
            out[name] = (times, len(first.content))
    return out


def imported_modules(code: str) -> tuple[set[str], dict[str, int]]:
    """The modules `python -X importtime -c code` imports, and the cumulative microseconds of each."""
    proc = C.run([sys.executable, "-X", "importtime", "-c", code]).check()
    cumulative: dict[str, int] = {}
    for line in proc.stderr.splitlines():
        found = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if found:
            cumulative[found.group(3)] = int(found.group(1))
    return set(cumulative), cumulative


def startup(repeat: int) -> dict[str, list[float]]:
    """Fresh-interpreter wall times, interleaved so that other load spreads over every row alike."""
    with_ui = CLI_SNIPPET.format(absent=False, packages=UI_PACKAGES)
    without_ui = CLI_SNIPPET.format(absent=True, packages=UI_PACKAGES)
    commands = {
        "`cairn --help`, ui extra installed": [sys.executable, "-c", with_ui, "--help"],
        "`cairn --help`, ui extra absent": [sys.executable, "-c", without_ui, "--help"],
        "`python -c 'import cairn.web.app'`": [sys.executable, "-c", "import cairn.web.app"],
        "`python -c 'import uvicorn'`": [sys.executable, "-c", "import uvicorn"],
        "`python -c 'import cairn'`": [sys.executable, "-c", "import cairn"],
        "`python -c pass`": [sys.executable, "-c", "pass"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for i in range(max(2 * repeat, 10)):
        if i % 5 == 0:
            C.progress(f"start-up repetition {i + 1}")
        for name, argv in commands.items():
            times[name].append(C.run(argv).check().wall_s)
    refused = C.run([sys.executable, "-c", without_ui, "ui", "--port", "1"])
    assert refused.returncode == 2 and "pip install 'cairn[ui]'" in refused.stderr, refused.stderr
    return times


def main() -> None:
    parser = C.parser(__doc__.splitlines()[0], default_repeat=10)
    parser.add_argument("--assets", type=int, default=1000, help="assets of the generated pipeline (default 1000)")
    parser.add_argument("--runs", type=int, default=10000, help="runs recorded in the database (default 10000)")
    args = parser.parse_args()
    C.header(f"cairn ui: {args.assets:,} assets, {args.runs:,} runs", args.repeat)
    with C.workspace("ui", keep=args.keep) as root:
        token, run_id = build(root, args.assets, args.runs)
        routes = {
            f"graph page `/graph` ({args.assets:,} assets)": "/graph",
            f"assets page `/assets` ({args.assets:,} assets)": "/assets",
            f"runs page `/runs` (newest 100 of {args.runs + 1:,})": "/runs",
            "runs page filtered `/runs?status=succeeded`": "/runs?status=succeeded",
            "runs API `/api/v1/runs?limit=100`": "/api/v1/runs?limit=100",
            f"one run's page `/runs/{{id}}` ({args.assets:,} steps)": f"/runs/{run_id}",
            "static stylesheet (the client's and middleware's own cost)": "/static/cairn.css",
        }
        served = serve(root, token, routes, args.repeat)
    pages = C.Table(
        f"Server time per request, in-process through the ASGI app (median of {args.repeat}, min-max)",
        ["request", "ms", "body KiB"],
    )
    for name, (times, size) in served.items():
        pages.add(name, C.spread(times, 1, 1000.0), f"{size / 1024:,.0f}")
    pages.print()

    loaded, cumulative = imported_modules("import cairn.cli.main")
    leaked = sorted(m for m in loaded if m.partition(".")[0] in UI_PACKAGES)
    _, web = imported_modules("import cairn.web.app")
    _, server = imported_modules("import uvicorn")
    times = startup(args.repeat)
    costs = C.Table(
        "What the UI costs at start-up (fresh interpreters, median and min-max seconds)",
        ["what", "seconds", "note"],
    )
    for name, ts in times.items():
        costs.add(name, C.spread(ts, 3), "")
    costs.add(
        '`python -X importtime -c "import cairn.cli.main"`',
        f"{cumulative.get('cairn.cli.main', 0) / 1e6:.3f} (self-reported)",
        f"{len(loaded)} modules; fastapi/starlette/uvicorn/jinja2: {', '.join(leaked) or 'none'}",
    )
    costs.add(
        "importtime of `cairn.web` / `fastapi` / `jinja2` / `uvicorn`",
        f"{web.get('cairn.web', 0) / 1e6:.3f} / {web.get('fastapi', 0) / 1e6:.3f} / "
        f"{web.get('jinja2', 0) / 1e6:.3f} / {server.get('uvicorn', 0) / 1e6:.3f}",
        "cumulative, as `-X importtime` reports it",
    )
    costs.notes.append(
        "With the ui extra absent, `cairn ui` exits 2 and names the extra (checked). "
        + ("`import cairn.cli.main` loads none of the UI's packages." if not leaked else "**The CLI loads the UI.**")
    )
    costs.print()
    if leaked:
        sys.exit(f"import cairn.cli.main imported {', '.join(leaked)}")


if __name__ == "__main__":
    main()
