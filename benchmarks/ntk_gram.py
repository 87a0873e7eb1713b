"""Empirical NTK Gram of the two-layer net: structured closed form against generic autodiff.

Prints, all measured in this one process (float32, jit-compiled ahead of time, compile time
reported separately, then one warm-up call and the best of --reps calls):
  * the dense float32 matmul rate (4096^3), the roofline for everything below;
  * per shape (n, d, M), first layer trained, the full n x n Gram by each route of
    jaxbof.ntk (STRUCTURED, NTVP, JACOBIAN) and a DENSE row: a matmul-only program with the
    structured route's FLOPs (X W^T, S S^T, X X^T on random inputs of those shapes). Columns:
    block size, compile seconds, seconds, GFLOP/s achieved, time over dense time of the same
    FLOPs (measured DENSE row for STRUCTURED; FLOPs at the 4096^3 rate for the generic routes),
    time over STRUCTURED. A route whose time, extrapolated by FLOPs from the last shape it ran
    at, exceeds --max-seconds, or whose memory exceeds --max-memory-gb at every block size, is
    printed as skipped with the prediction;
  * the max relative difference between routes at the smallest shape;
  * the target-shape figures (the targets: structured within 2x of dense matmul of the same
    FLOPs; generic within 5x of structured), with the FLOP ratio generic / structured.

FLOPs (a multiply-add counts 2): structured 2 n^2 (M + d) + 2 n M d; generic 2 n^2 M d, the
contraction J J^T over the P = M d first-layer parameters (n^2 M d multiply-adds).

Usage: python benchmarks/ntk_gram.py [--quick] [--max-seconds S] [--max-memory-gb G] [--reps R]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

from jaxbof.ntk import Route, TwoLayerParams, empirical_ntk_fn, init_two_layer, two_layer_apply

SHAPES = ((256, 64, 256), (512, 128, 512), (1024, 256, 1024), (2048, 512, 2048), (4096, 1024, 4096))
QUICK_SHAPES = ((128, 32, 128), (256, 64, 256), (512, 128, 512))
TARGET = (4096, 1024, 4096)
ROUTES = (Route.STRUCTURED, Route.NTVP, Route.JACOBIAN)
FIRST_LAYER = TwoLayerParams(True, False, None)


def structured_flops(n, d, M):
    return 2 * n * n * (M + d) + 2 * n * M * d


def route_flops(route, n, d, M):
    return structured_flops(n, d, M) if route is Route.STRUCTURED else 2 * n * n * M * d


def memory_bytes(route, n, d, M, b):
    """Rough peak float32 footprint with blocks of b inputs: H, S, G and K for STRUCTURED; the
    two Jacobian blocks (b x M d) for JACOBIAN; the b column tangents (b x M d) and their
    pushed-forward pre-activations (b x b x M) for NTVP; plus the Gram and its block copy."""
    floats = {
        Route.STRUCTURED: n * d + M * d + 3 * n * M + 3 * n * n,
        Route.JACOBIAN: 2 * b * M * d + b * M + 2 * n * n,
        Route.NTVP: b * M * d + b * b * M + 2 * n * n,
    }[route]
    return 4 * floats


def block_size(route, n, d, M, budget):
    """Largest power-of-two block (n itself for STRUCTURED) within the memory budget, or None."""
    if route is Route.STRUCTURED:
        return n if memory_bytes(route, n, d, M, n) <= budget else None
    b = 1 << (n.bit_length() - 1)
    while b >= 1 and memory_bytes(route, n, d, M, b) > budget:
        b //= 2
    return b or None


def timed(fn, *args, reps, max_seconds):
    """(compile_s, best_s, out): compile ahead of time, one warm-up call, then the best of up
    to `reps` calls, stopping early when another call would pass max_seconds of timed calls."""
    t = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t
    jax.block_until_ready(compiled(*args))
    best, spent = float("inf"), 0.0
    for _ in range(reps):
        t = time.perf_counter()
        out = jax.block_until_ready(compiled(*args))
        dt = time.perf_counter() - t
        best, spent = min(best, dt), spent + dt
        if spent + best > max_seconds:
            break
    return compile_s, best, out


def dense_rate(reps, max_seconds, size=4096):
    """GFLOP/s of one square float32 matmul."""
    a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
    _, s, _ = timed(lambda x: x @ x, a, reps=reps, max_seconds=max_seconds)
    return 2.0 * size**3 / s / 1e9


def dense_same_flops(n, d, M, reps, max_seconds):
    """(compile_s, seconds) of X W^T, S S^T and X X^T: the structured route's matmuls alone."""
    kx, kw, ks = jax.random.split(jax.random.key(1), 3)
    X = jax.random.normal(kx, (n, d), jnp.float32)
    W = jax.random.normal(kw, (M, d), jnp.float32)
    S = jax.random.normal(ks, (n, M), jnp.float32)
    c, s, _ = timed(
        lambda X, W, S: (X @ W.T, S @ S.T, X @ X.T), X, W, S, reps=reps, max_seconds=max_seconds
    )
    return c, s


def rel_diff(A, B):
    return float(jnp.max(jnp.abs(A - B)) / jnp.max(jnp.abs(B)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small shapes only (under a minute)")
    ap.add_argument(
        "--max-seconds",
        type=float,
        default=60.0,
        help="skip a route at a shape whose predicted time per Gram exceeds this",
    )
    ap.add_argument(
        "--max-memory-gb",
        type=float,
        default=4.0,
        help="memory budget per route; generic routes are blocked to fit it",
    )
    ap.add_argument("--reps", type=int, default=3, help="timed calls per measurement (best of)")
    args = ap.parse_args()
    shapes = QUICK_SHAPES if args.quick else SHAPES
    budget = args.max_memory_gb * 2**30
    timing = dict(reps=args.reps, max_seconds=args.max_seconds)
    print(
        f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), float32, "
        f"jax {jax.__version__}"
    )

    rate = dense_rate(**timing)
    print(f"dense f32 matmul 4096^3: {rate:.1f} GFLOP/s\n")
    print(
        f"{'n':>5} {'d':>5} {'M':>5}  {'route':<10} {'block':>5} {'compile_s':>9} "
        f"{'seconds':>9} {'GFLOP/s':>8} {'x dense':>8} {'x struct':>8}"
    )

    last = {}  # route -> (flops, seconds) at the last shape it ran at
    results = {}  # (shape, route) -> seconds measured, or ("skipped", predicted seconds)
    dense_s = {}
    spot = {}
    for shape in shapes:
        n, d, M = shape
        kp, kx = jax.random.split(jax.random.key(n))
        params = init_two_layer(kp, M, d, dtype=jnp.float32)
        x = jax.random.normal(kx, (n, d), jnp.float32) / jnp.sqrt(jnp.float32(d))

        c, s = dense_same_flops(n, d, M, **timing)
        dense_s[shape] = s
        flops = structured_flops(n, d, M)
        print(
            f"{n:5d} {d:5d} {M:5d}  {'DENSE':<10} {'-':>5} {c:9.2f} {s:9.4f} "
            f"{flops / s / 1e9:8.1f} {1.0:8.2f} {'-':>8}"
        )

        for route in ROUTES:
            flops = route_flops(route, n, d, M)
            b = block_size(route, n, d, M, budget)
            head = f"{n:5d} {d:5d} {M:5d}  {route.name:<10}"
            if b is None:
                need = memory_bytes(route, n, d, M, 1) / 2**30
                print(f"{head} skipped (needs {need:.1f} GiB > {args.max_memory_gb:g} GiB)")
                continue
            if route in last:
                prev_flops, prev_s = last[route]
                predicted = prev_s * flops / prev_flops
                if predicted > args.max_seconds:
                    results[shape, route] = ("skipped", predicted)
                    print(f"{head} skipped (predicted {predicted:.1f} s > {args.max_seconds:g} s)")
                    continue
            ntk = empirical_ntk_fn(
                two_layer_apply,
                route=route,
                trainable=FIRST_LAYER,
                batch_size=None if b >= n else b,
            )
            c, s, K = timed(ntk, params, x, **timing)
            last[route] = (flops, s)
            results[shape, route] = s
            if shape == shapes[0]:
                spot[route] = K
            x_dense = s / (dense_s[shape] if route is Route.STRUCTURED else flops / rate / 1e9)
            struct = results.get((shape, Route.STRUCTURED))
            x_struct = f"{s / struct:8.2f}" if isinstance(struct, float) else f"{'-':>8}"
            print(
                f"{head} {b:5d} {c:9.2f} {s:9.4f} {flops / s / 1e9:8.1f} {x_dense:8.2f} {x_struct}"
            )

    if Route.JACOBIAN in spot:
        print(
            f"\ncorrectness at (n, d, M) = {shapes[0]}, max |K - K_JACOBIAN| / "
            "max |K_JACOBIAN|: "
            + ", ".join(
                f"{r.name} {rel_diff(spot[r], spot[Route.JACOBIAN]):.1e}"
                for r in ROUTES
                if r is not Route.JACOBIAN and r in spot
            )
        )

    shape = TARGET if TARGET in shapes else shapes[-1]
    flop_ratio = route_flops(Route.NTVP, *shape) / structured_flops(*shape)
    struct = results.get((shape, Route.STRUCTURED))
    label = "target" if shape == TARGET else "largest (not the target)"
    if not isinstance(struct, float):
        print(f"\nsummary, {label} shape {shape}: structured route not measured")
        return
    generic = []
    for route in (Route.NTVP, Route.JACOBIAN):
        r = results.get((shape, route))
        if isinstance(r, float):
            generic.append(f"{route.name} {r / struct:.1f}x")
        elif r is not None:
            generic.append(f"{route.name} skipped (predicted {r[1]:.0f} s, {r[1] / struct:.0f}x)")
        else:
            generic.append(f"{route.name} skipped (memory)")
    for route in (Route.NTVP, Route.JACOBIAN):
        ran = [
            sh
            for sh in shapes
            if isinstance(results.get((sh, route)), float)
            and isinstance(results.get((sh, Route.STRUCTURED)), float)
        ]
        if ran:
            sh = ran[-1]
            print(
                f"largest measured {route.name}: {sh}, "
                f"{results[sh, route] / results[sh, Route.STRUCTURED]:.1f}x structured "
                f"(FLOP ratio {route_flops(route, *sh) / structured_flops(*sh):.0f})"
            )
    print(
        f"\nsummary, {label} shape (n, d, M) = {shape}: structured {struct:.3f} s, dense "
        f"same FLOPs {dense_s[shape]:.3f} s, ratio {struct / dense_s[shape]:.2f} (target <= 2); "
        f"generic / structured: {', '.join(generic)} (target <= 5; FLOP ratio "
        f"{flop_ratio:.0f}{', so infeasible by FLOP count' if flop_ratio > 5 else ''})"
    )


if __name__ == "__main__":
    main()
