"""How a classification sweep scales, every figure measured in this run, through the CLI in
fresh processes (start-up and compiling included, as a user sees it):

1. time against the number of models (three grid sizes; the slope of log time on log models),
2. time against local devices (1, 2, 4; CPU devices via JAX_NUM_CPU_DEVICES where no
   accelerator is present),
3. cold against warm persistent compile cache,
4. one process against two processes on 127.0.0.1,
5. where the time of a cold and a warm run goes (the issue's 40-model grid, each run a fresh
   process with a fresh --out; cold: a fresh XDG_CACHE_HOME, warm: the cold run's), by phase
   (the CLI's JAXBOF_PHASES line, engine.PHASES), cold and warm alternating.

    python benchmarks/scaling.py [--seeds-list 1,2,4] [--out /tmp/jaxbof-scaling]
                                 [--sections 1,2,3,4,5] [--pairs 2] [--sync]

On the 2-core CPU, extra devices and processes share the same two cores, so figures 2 and 4
measure the overhead of sharding and of splitting a sweep, not a speed-up; on a multi-GPU node
they measure the speed-up.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

GRID = [
    "sweep",
    "classification",
    "--n",
    "20,30",
    "--d-over-n",
    "1:4",
    "--gamma",
    "0.3",
    "--width",
    "16",
    "--n-test",
    "500",
    "--no-progress",
    "--no-plots",
]
PHASE_GRID = [
    "sweep",
    "classification",
    "--n",
    "100,150",
    "--d-over-n",
    "1:10",
    "--seeds",
    "2",
    "--no-progress",
]  # 40 models, plots drawn: as a user runs it


def run(args, out: Path, cache: Path, devices: int = 1, extra=()):
    env = dict(os.environ, JAX_NUM_CPU_DEVICES=str(devices))
    t = time.perf_counter()
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "jaxbof.cli",
            *args,
            "--out",
            str(out),
            "--compile-cache",
            str(cache),
            *extra,
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    if p.returncode:
        sys.exit(p.stderr)
    return time.perf_counter() - t, _sweep_s(p.stderr)


def _sweep_s(err: str) -> float:
    """The sweep's own wall time, from the CLI's 'trained N models in X s' line."""
    m = re.search(r"trained \d+ models in ([0-9.]+) s", err)
    return float(m.group(1)) if m else math.nan


def two_processes(args, out: Path, cache: Path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t = time.perf_counter()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jaxbof.cli",
                *args,
                "--out",
                str(out),
                "--compile-cache",
                str(cache),
                "--coordinator",
                f"127.0.0.1:{port}",
                "--num-processes",
                "2",
                "--process-id",
                str(i),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for p in procs:
        _, err = p.communicate()
        if p.returncode:
            sys.exit(err)
    return time.perf_counter() - t


def import_s() -> tuple[float, float]:
    """Seconds to import jax, then jaxbof.cli with everything a sweep imports, in a fresh
    process."""
    code = (
        "import time; t0 = time.perf_counter(); import jax; t1 = time.perf_counter(); "
        "import jaxbof.cli, jaxbof.engine, jaxbof.store, jaxbof.experiments.classification; "
        "print(t1 - t0, time.perf_counter() - t1)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    jax_s, rest_s = map(float, out.stdout.split())
    return jax_s, rest_s


def phase_run(out: Path, xdg: Path, sync: bool) -> dict:
    """One run of PHASE_GRID in a fresh process: wall time measured here, the phases the CLI
    reports, and 'startup' (interpreter and imports before the command runs: wall minus the
    command's own phases)."""
    env = dict(os.environ, XDG_CACHE_HOME=str(xdg), JAXBOF_PHASES="sync" if sync else "1")
    t = time.perf_counter()
    p = subprocess.run(
        [sys.executable, "-m", "jaxbof.cli", *PHASE_GRID, "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t
    if p.returncode:
        sys.exit(p.stderr)
    line = [x for x in p.stderr.splitlines() if x.startswith("phases (s): ")][-1]
    ph = {k: float(v) for k, v in (kv.split("=") for kv in line.split(": ", 1)[1].split())}
    main_thread = [k for k in ph if k not in ("lower", "compile")]
    return {"wall": wall, "startup": wall - sum(ph[k] for k in main_thread), **ph}


PHASE_LINES = [  # (label, phases summed)
    ("start-up: interpreter, imports", ("startup",)),
    ("runtime: jax config, devices", ("runtime",)),
    ("imports in the command", ("import",)),
    ("results dir, resume, table", ("results",)),
    ("engine setup: tracing slot sizes", ("setup",)),
    ("waiting for compiles", ("compile_wait",)),
    ("sampling dispatch (prepare)", ("prepare",)),
    ("training (cycle waits)", ("train",)),
    ("measurement (report)", ("report",)),
    ("writing results", ("write",)),
    ("engine other", ("other", "sweep_other")),
    ("plots", ("plots",)),
    ("wall, measured outside", ("wall",)),
    ("  [both threads] tracing, lowering", ("lower",)),
    ("  [both threads] XLA compile / cache load", ("compile",)),
]


def phases(root: Path, pairs: int, sync: bool):
    jax_s, rest_s = import_s()
    print(
        f"5. cold against warm, by phase ({' '.join(PHASE_GRID[:2])}, 40 models; seconds, "
        f"median of {pairs} alternating pairs{'; sampling synchronous' if sync else ''})"
    )
    print(
        f"   import alone, fresh process: jax {jax_s:.2f} s, jaxbof.cli and the sweep's "
        f"modules {rest_s:.2f} s"
    )
    runs = {"cold": [], "warm": []}
    for i in range(pairs):
        xdg = root / f"xdg{i}"
        runs["cold"].append(phase_run(root / f"phase-cold{i}", xdg, sync))
        runs["warm"].append(phase_run(root / f"phase-warm{i}", xdg, sync))
        same = [
            sorted((root / f"phase-{k}{i}" / "results.csv").read_text().splitlines())
            for k in ("cold", "warm")
        ]
        if same[0] != same[1]:
            sys.exit(f"pair {i}: warm rows differ from cold rows")
    med = {k: {p: statistics.median(r[p] for r in v) for p in v[0]} for k, v in runs.items()}
    print(f"   {'phase':42s} {'cold':>7s} {'warm':>7s}")
    for label, keys in PHASE_LINES:
        c, w = (sum(med[k].get(p, 0.0) for p in keys) for k in ("cold", "warm"))
        print(f"   {label:42s} {c:7.2f} {w:7.2f}")
    ratios = [c["wall"] / w["wall"] for c, w in zip(runs["cold"], runs["warm"])]
    print(
        f"   cold / warm (whole process) per pair: {' '.join(f'{r:.2f}' for r in ratios)}; "
        f"median {statistics.median(ratios):.2f}; rows of warm and cold equal"
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds-list", default="8,16,32")
    ap.add_argument("--out", default="/tmp/jaxbof-scaling")
    ap.add_argument("--sections", default="1,2,3,4,5")
    ap.add_argument("--pairs", type=int, default=2, help="cold/warm pairs of section 5")
    ap.add_argument(
        "--sync",
        action="store_true",
        help="section 5: block on each sampled batch (JAXBOF_PHASES=sync)",
    )
    a = ap.parse_args()
    root = Path(a.out)
    shutil.rmtree(root, ignore_errors=True)
    sections = {int(x) for x in a.sections.split(",")}
    cache = root / "cache"
    seeds = [int(s) for s in a.seeds_list.split(",")]
    grid = lambda s: GRID + ["--seeds", str(s)]
    s = seeds[-1]
    if sections & {1, 2, 4}:
        # seeds >= 8: every bucket fills the 8 slots per device, so all sizes share programs
        run(
            grid(seeds[0]), root / "warmup", cache
        )  # fill the compile cache: the runs below are warm

    if 1 in sections:
        print("1. time against models (warm cache; process = start-up included, sweep = engine)")
        times = []
        for k in seeds:
            models = 2 * 4 * k
            t, sw = run(grid(k), root / f"models{k}", cache)
            times.append((models, sw))
            print(
                f"   {models:5d} models  process {t:7.2f} s  sweep {sw:7.2f} s  "
                f"{sw / models * 1e3:8.1f} ms per model"
            )
        (m0, t0), (m1, t1) = times[0], times[-1]
        print(f"   slope d log sweep / d log models = {math.log(t1 / t0) / math.log(m1 / m0):.2f}")

    if 2 in sections:
        print("2. time against devices (warm cache)")
        base = None
        for d in (1, 2, 4):
            run(
                grid(seeds[0]), root / f"warm-dev{d}", cache, devices=d, extra=["--devices", str(d)]
            )
            t, sw = run(grid(s), root / f"dev{d}", cache, devices=d, extra=["--devices", str(d)])
            base = base or sw
            print(f"   {d} device(s)  sweep {sw:7.2f} s  ratio to 1 device {sw / base:5.2f}")

    if 3 in sections:
        print("3. cold against warm compile cache (whole process)")
        cold, _ = run(grid(s), root / "cold", root / "cold-cache")
        warm, _ = run(grid(s), root / "warm", root / "cold-cache")
        print(f"   cold {cold:7.2f} s  warm {warm:7.2f} s  warm / cold {warm / cold:5.2f}")

    if 4 in sections:
        print("4. one process against two (warm cache, whole processes)")
        one, _ = run(grid(s), root / "one", cache)
        two = two_processes(grid(s), root / "two", cache)
        print(f"   one {one:7.2f} s  two {two:7.2f} s  two / one {two / one:5.2f}")
        same = (
            (root / "one" / "results.csv").read_text().splitlines()[1:],
            (root / "two" / "results.csv").read_text().splitlines()[1:],
        )
        print(f"   merged rows equal the one-process rows: {sorted(same[0]) == sorted(same[1])}")

    if 5 in sections:
        phases(root, a.pairs, a.sync)


if __name__ == "__main__":
    main()
