"""How a classification sweep scales, every figure measured in this run, through the CLI in
fresh processes (start-up and compiling included, as a user sees it):

1. time against the number of models (three grid sizes; the slope of log time on log models),
2. time against local devices (1, 2, 4; CPU devices via JAX_NUM_CPU_DEVICES where no
   accelerator is present),
3. cold against warm persistent compile cache,
4. one process against two processes on 127.0.0.1.

    python benchmarks/scaling.py [--seeds-list 1,2,4] [--out /tmp/jaxbof-scaling]

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
import subprocess
import sys
import time
from pathlib import Path

GRID = ["sweep", "classification", "--n", "20,30", "--d-over-n", "1:4", "--gamma", "0.3",
        "--width", "16", "--n-test", "500", "--no-progress", "--no-plots"]


def run(args, out: Path, cache: Path, devices: int = 1, extra=()):
    env = dict(os.environ, JAX_NUM_CPU_DEVICES=str(devices))
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "jaxbof.cli", *args, "--out", str(out),
                        "--compile-cache", str(cache), *extra], env=env, capture_output=True,
                       text=True)
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
    procs = [subprocess.Popen([sys.executable, "-m", "jaxbof.cli", *args, "--out", str(out),
                               "--compile-cache", str(cache), "--coordinator",
                               f"127.0.0.1:{port}", "--num-processes", "2", "--process-id",
                               str(i)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True) for i in range(2)]
    for p in procs:
        _, err = p.communicate()
        if p.returncode:
            sys.exit(err)
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds-list", default="8,16,32")
    ap.add_argument("--out", default="/tmp/jaxbof-scaling")
    a = ap.parse_args()
    root = Path(a.out)
    shutil.rmtree(root, ignore_errors=True)
    cache = root / "cache"
    seeds = [int(s) for s in a.seeds_list.split(",")]
    grid = lambda s: GRID + ["--seeds", str(s)]  # noqa: E731
    # seeds >= 8: every bucket fills the 8 slots per device, so all sizes share programs
    run(grid(seeds[0]), root / "warmup", cache)  # fill the compile cache: the runs below are warm

    print("1. time against models (warm cache; process = start-up included, sweep = engine)")
    times = []
    for s in seeds:
        models = 2 * 4 * s
        t, sw = run(grid(s), root / f"models{s}", cache)
        times.append((models, sw))
        print(f"   {models:5d} models  process {t:7.2f} s  sweep {sw:7.2f} s  "
              f"{sw / models * 1e3:8.1f} ms per model")
    (m0, t0), (m1, t1) = times[0], times[-1]
    print(f"   slope d log sweep / d log models = {math.log(t1 / t0) / math.log(m1 / m0):.2f}")

    s = seeds[-1]
    print("2. time against devices (warm cache)")
    base = None
    for d in (1, 2, 4):
        run(grid(seeds[0]), root / f"warm-dev{d}", cache, devices=d,
            extra=["--devices", str(d)])
        t, sw = run(grid(s), root / f"dev{d}", cache, devices=d, extra=["--devices", str(d)])
        base = base or sw
        print(f"   {d} device(s)  sweep {sw:7.2f} s  ratio to 1 device {sw / base:5.2f}")

    print("3. cold against warm compile cache (whole process)")
    cold, _ = run(grid(s), root / "cold", root / "cold-cache")
    warm, _ = run(grid(s), root / "warm", root / "cold-cache")
    print(f"   cold {cold:7.2f} s  warm {warm:7.2f} s  warm / cold {warm / cold:5.2f}")

    print("4. one process against two (warm cache, whole processes)")
    one, _ = run(grid(s), root / "one", cache)
    two = two_processes(grid(s), root / "two", cache)
    print(f"   one {one:7.2f} s  two {two:7.2f} s  two / one {two / one:5.2f}")
    same = ((root / "one" / "results.csv").read_text().splitlines()[1:],
            (root / "two" / "results.csv").read_text().splitlines()[1:])
    print(f"   merged rows equal the one-process rows: {sorted(same[0]) == sorted(same[1])}")


if __name__ == "__main__":
    main()
