"""`jaxbof verify`: every theorem's predictions as claims with a verdict, and one report.

A claim (`contract.Claim`, declared by its plug-in in `Plugin.claims`) reads the results of one
preset (`jaxbof reproduce NAME`; NAME/PART: the part of a suite in that subdirectory; a
plug-in's own name: any sweep of it, its default grid when verify runs it), estimates a quantity
with a 95% interval (the unit of independent randomness resampled whole: `stats.unit_interval`,
`stats.clopper_pearson`; one interval per cell at the Bonferroni level for a claim over every
cell) and compares the interval with its criterion, fixed in the claim's code before any
measurement:

    holds          the whole interval satisfies the criterion (every cell, for "for every")
    fails          the whole interval violates it (any cell)
    inconclusive   the interval straddles it: too few runs to say; reported, never an error

A claim that fails for a reason the project understands is declared `expected="fails"` with the
reason. `jaxbof verify` exits 1 only where a verdict contradicts its expectation.

Results directories are matched to a claim's preset by the experiment recorded in their
config.json (kind, name, grid and protocol; the run metadata is ignored): a run of the same
experiment under another protocol is skipped with one line saying why. JAX-free except where
it runs the presets (`run_presets`, through jaxbof.runner).
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import html
import json
import math
import platform
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from jaxbof import store
from jaxbof.contract import Claim, Estimate, HostStudy, Study, Suite

SCHEMA_VERSION = 1
LEVEL = 0.95
VERDICTS = ("holds", "fails", "inconclusive")


class Result(NamedTuple):
    """A claim evaluated on one results directory (directory None: not evaluated)."""

    experiment: str  # the plug-in declaring the claim
    claim: Claim
    estimates: tuple  # Estimate, one per cell for a claim over every cell
    verdict: str  # holds | fails | inconclusive | not evaluated
    directory: str | None = None
    config: Mapping | None = None
    note: str = ""  # why not evaluated, or an error of the estimate

    @property
    def contradicts(self) -> bool:
        """The verdict says the opposite of what the claim expects."""
        return {"fails": "holds", "holds": "fails"}.get(self.verdict) == self.claim.expected


def claims(kinds: Sequence[str] = ()) -> list[tuple[str, Claim]]:
    """(plug-in name, claim) of every plug-in, or of the named ones (ValueError naming an
    unknown one)."""
    from jaxbof import experiments

    chosen = [experiments.plugin(k) for k in kinds] if kinds else experiments.plugins()
    return [(p.name, c) for p in chosen for c in p.claims]


def verdict_of(criterion, estimates: Sequence[Estimate]) -> str:
    """holds when every interval holds, fails when any fails, else inconclusive."""
    each = [criterion.verdict(e.low, e.high) for e in estimates]
    if not each:
        return "inconclusive"
    if "fails" in each:
        return "fails"
    return "holds" if all(v == "holds" for v in each) else "inconclusive"


def evaluate(
    experiment: str,
    claim: Claim,
    directory,
    level: float = LEVEL,
    *,
    rows: list | None = None,
    config: Mapping | None = None,
) -> Result:
    """The claim on the rows of `directory` (rows and config: already read from it)."""
    directory = Path(directory)
    config = (store.load_config(directory) or {}) if config is None else config
    rows = store.load_results(directory) if rows is None else rows
    try:
        got = claim.estimate(rows, config, level)
    except (ValueError, KeyError, ZeroDivisionError) as e:
        return Result(
            experiment,
            claim,
            (),
            "inconclusive",
            str(directory),
            config,
            f"cannot estimate: {type(e).__name__}: {e}",
        )
    estimates = (
        tuple(got) if isinstance(got, (list, tuple)) and not isinstance(got, Estimate) else (got,)
    )
    return Result(
        experiment, claim, estimates, verdict_of(claim.criterion, estimates), str(directory), config
    )


# ----------------------------------------------------------------------------- matching


def preset_entry(reads: str, quick: bool) -> dict:
    """What `jaxbof reproduce READS [--quick]` records as config.json's experiment (kind, name,
    grid and protocol, or config), as JSON."""
    from jaxbof import experiments

    known = experiments.reproducible()
    if reads not in known and reads in experiments.names():
        return {"kind": reads}  # a plug-in's claim on any sweep of it
    preset, _, part = reads.partition("/")
    if preset not in known:
        raise ValueError(
            f"claim reads {reads!r}, which no plug-in reproduces; known: {', '.join(known)}"
        )
    study = known[preset][1].study(quick)
    if isinstance(study, Suite):
        roots = [p for sub, p in study.parts if sub == part]
        if not roots:
            raise ValueError(
                f"{reads}: the suite {preset} has no part {part!r} (its parts: "
                f"{', '.join(repr(sub) for sub, _ in study.parts)})"
            )
        study = roots[0]
    elif part:
        raise ValueError(f"claim reads {reads!r}, but {preset} is not a suite of parts")
    if isinstance(study, HostStudy):
        entry = {"kind": study.kind, "name": study.name, "config": study.config, "part": study.part}
    elif isinstance(study, Study):
        entry = {
            "kind": study.kind,
            "name": study.name,
            "grid": study.grid,
            "protocol": study.protocol,
        }
    else:
        raise ValueError(f"{reads}: unknown study type {type(study).__name__}")
    return store.jsonable(entry)


def match(config: Mapping | None, reads: str, entries: Mapping) -> tuple[bool | None, str]:
    """(quick, "") where config.json records the preset `reads` (quick or full), (None, why)
    where it records the same experiment under another protocol, (None, "") otherwise.
    entries: {quick: preset_entry(reads, quick)}."""
    recorded = (config or {}).get("experiment") or {}
    kinds = {e["kind"] for e in entries.values()}
    parts = {e.get("part") for e in entries.values()}
    if recorded.get("kind") not in kinds or recorded.get("part") not in parts:
        return None, ""
    for quick, entry in entries.items():
        if all(_same(recorded.get(k), v) for k, v in entry.items()):
            return quick, ""
    name = str(recorded.get("name", ""))
    if not name.startswith(reads):  # another preset of the same experiment, or a sweep
        return None, ""
    closest = entries[True] if f"{reads}-quick" in name else entries[False]
    differ = [k for k, v in closest.items() if not _same(recorded.get(k), v)]
    return None, (
        f"{recorded.get('kind')} run {name!r} is not {reads}"
        f"{' --quick' if closest is entries[True] else ''} ({', '.join(differ)} "
        "differ): skipped"
    )


def _same(a, b) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def scan(root, chosen: Sequence[tuple[str, Claim]], say=print) -> list[Result]:
    """Every claim on every directory under `root` that holds its preset's results; claims
    whose preset is not there are `not evaluated`. One line through `say` per directory
    skipped for another protocol."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"--results {str(root)!r}: not a directory")
    dirs = sorted({p.parent for p in root.rglob(store.CONFIG)})
    entries = {
        reads: {q: preset_entry(reads, q) for q in (False, True)}
        for reads in {c.reads for _, c in chosen}
    }
    found: dict = {}  # reads -> [directory]
    configs: dict = {}
    for d in dirs:
        try:
            config = store.load_config(d)
        except ValueError as e:
            say(f"jaxbof: {e}: skipped")
            continue
        configs[d] = config
        for reads, entry in entries.items():
            quick, why = match(config, reads, entry)
            if quick is not None:
                found.setdefault(reads, []).append(d)
            elif why:
                say(f"jaxbof: {d}: {why}")
    rows: dict = {}  # each directory's rows, read once for all its claims
    out = []
    for experiment, claim in chosen:
        if claim.reads not in found:
            out.append(
                Result(
                    experiment,
                    claim,
                    (),
                    "not evaluated",
                    note=f"no results of {claim.reads} under {root}",
                )
            )
        for d in found.get(claim.reads, ()):
            if d not in rows:
                rows[d] = store.load_results(d)
            out.append(evaluate(experiment, claim, d, rows=rows[d], config=configs[d] or {}))
    return out


def run_presets(chosen: Sequence[tuple[str, Claim]], out, quick: bool, options=None) -> int:
    """Run (resuming) the presets the claims read into OUT/<preset>[-quick]; returns 0 or the
    exit code of a preset that stopped."""
    from jaxbof import experiments, runner

    options = options or runner.Options()
    known = experiments.reproducible()
    for reads in dict.fromkeys(c.reads.partition("/")[0] for _, c in chosen):
        where = Path(out) / (reads + ("-quick" if quick else ""))
        print(f"jaxbof verify: {reads}{' --quick' if quick else ''} into {where}", file=sys.stderr)
        study = (
            known[reads][1].study(quick)
            if reads in known
            else experiments.default_study(experiments.plugin(reads))
        )
        rc = runner.run(study, options._replace(out=str(where)))
        if rc:
            return rc
    return 0


# ----------------------------------------------------------------------------- the report


def _fmt(x: float) -> str:
    return "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4g}"


def summary(result: Result) -> str:
    """The estimate and its interval in a few characters (the worst cell of several)."""
    if not result.estimates:
        return "-"
    e = _worst(result)
    cells = (
        f" ({e.cell}, worst of {len(result.estimates)} cells)" if len(result.estimates) > 1 else ""
    )
    return f"{_fmt(e.value)} [{_fmt(e.low)}, {_fmt(e.high)}]{cells}"


def _worst(result: Result) -> Estimate:
    order = {"fails": 0, "inconclusive": 1, "holds": 2}
    return min(result.estimates, key=lambda e: order[result.claim.criterion.verdict(e.low, e.high)])


def table(results: Sequence[Result]) -> list[str]:
    """The verdict table, one line per result (markdown)."""
    lines = [
        "| claim | experiment | estimate [95% interval] | criterion | verdict | expected | "
        "results |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        flag = " **(contradicts)**" if r.contradicts else ""
        where = (
            "-"
            if not r.directory
            else (
                "/".join(Path(r.directory).parts[-2:])
                if "/" in r.claim.reads
                else Path(r.directory).name
            )
        )  # a suite's part: the suite's directory too
        lines.append(
            f"| {r.claim.id} | {r.experiment} | {summary(r)} | {r.claim.criterion} | "
            f"{r.verdict}{flag} | {r.claim.expected} | {where} |"
        )
    return lines


def provenance(seed: int = 0) -> dict:
    """What produced the report: versions, commit where known, resampling."""
    import jaxbof
    from jaxbof import stats

    def version(name):
        try:
            from importlib.metadata import version as v

            return v(name)
        except Exception:  # noqa: BLE001 - not installed: say so
            return None

    commit = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                cwd=Path(jaxbof.__file__).parent,
                timeout=10,
            ).stdout.strip()
            or None
        )
    return {
        "schema_version": SCHEMA_VERSION,
        "jaxbof": jaxbof.__version__,
        "commit": commit,
        "jax": version("jax"),
        "jaxlib": version("jaxlib"),
        "python": platform.python_version(),
        "level": LEVEL,
        "resamples": stats.RESAMPLES,
        "bootstrap_min_units": stats.BOOTSTRAP_MIN,
        "seed": stats.SEED,
        "written": datetime.datetime.now().isoformat(timespec="seconds"),
    }


def as_json(results: Sequence[Result]) -> dict:
    out = []
    for r in results:
        c = r.claim
        out.append(
            {
                "id": c.id,
                "experiment": r.experiment,
                "statement": c.statement,
                "source": c.source,
                "preset": c.reads,
                "criterion": str(c.criterion),
                "criterion_low": c.criterion.low,
                "criterion_high": c.criterion.high,
                "verdict": r.verdict,
                "expected": c.expected,
                "reason": c.reason,
                "contradicts": r.contradicts,
                "directory": r.directory,
                "note": r.note,
                "estimates": [
                    {
                        "cell": e.cell,
                        "estimate": e.value,
                        "interval": [e.low, e.high],
                        "level": e.level,
                        "method": e.method,
                        "verdict": c.criterion.verdict(e.low, e.high),
                    }
                    for e in r.estimates
                ],
                "config": (r.config or {}).get("experiment"),
            }
        )
    return {"provenance": provenance(), "claims": out}


def write(results: Sequence[Result], out) -> list[Path]:
    """DIR/report.md, DIR/report.json and DIR/report.html (self-contained: the presets'
    pictures embedded)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    doc = as_json(results)
    paths = [out / "report.md", out / "report.json", out / "report.html"]
    paths[1].write_text(json.dumps(_finite(doc), indent=2) + "\n")
    paths[0].write_text(_markdown(results, doc["provenance"]))
    paths[2].write_text(_html(results, doc["provenance"]))
    return paths


def _finite(obj):
    """JSON without NaN/Infinity (strict readers refuse them): as strings."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _details(r: Result) -> list[str]:
    c = r.claim
    lines = [
        f"### {c.id}: {c.statement}",
        "",
        f"- source: {c.source}",
        f"- reads: `{c.reads}`" + (f" in `{r.directory}`" if r.directory else ""),
        f"- criterion: estimate {c.criterion}; verdict **{r.verdict}**, expected "
        f"{c.expected}" + (f" ({c.reason})" if c.reason else ""),
    ]
    if r.note:
        lines.append(f"- note: {r.note}")
    for e in r.estimates:
        lines.append(
            f"- {e.cell or 'estimate'}: {_fmt(e.value)} [{_fmt(e.low)}, "
            f"{_fmt(e.high)}] at {e.level:.4g} ({e.method})"
        )
    return lines + [""]


def _markdown(results: Sequence[Result], prov: Mapping) -> str:
    bad = sum(r.contradicts for r in results)
    head = [
        "# jaxbof verify",
        "",
        f"{len(results)} claims; {bad} contradict their expectation. "
        f"jaxbof {prov['jaxbof']} (commit {prov['commit'] or 'unknown'}), jax {prov['jax']}; "
        f"95% intervals ({prov['resamples']} bootstrap resamples with seed {prov['seed']} "
        f"from {prov['bootstrap_min_units']} units, else t or exact).",
        "",
    ]
    body = [line for r in results for line in _details(r)]
    return "\n".join(head + table(results) + ["", "## Claims", ""] + body)


def _html(results: Sequence[Result], prov: Mapping) -> str:
    rows = []
    for r in results:
        cls = "bad" if r.contradicts else r.verdict.replace(" ", "-")
        rows.append(
            "<tr class='{}'><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
            "<td>{}</td><td>{}</td></tr>".format(
                *(
                    html.escape(str(x))
                    for x in (
                        cls,
                        r.claim.id,
                        r.experiment,
                        r.claim.statement,
                        summary(r),
                        r.claim.criterion,
                        r.verdict,
                        r.claim.expected,
                    )
                )
            )
        )
    pictures = []
    for d in dict.fromkeys(r.directory for r in results if r.directory):
        for png in sorted(Path(d).glob("*.png")):
            data = base64.b64encode(png.read_bytes()).decode()
            pictures.append(
                f"<figure><img src='data:image/png;base64,{data}' "
                f"alt='{html.escape(png.name)}'><figcaption>"
                f"{html.escape(str(png))}</figcaption></figure>"
            )
    details = "".join(f"<pre>{html.escape(chr(10).join(_details(r)))}</pre>" for r in results)
    style = (
        "body{font-family:sans-serif;max-width:70em;margin:auto}td,th{border:1px solid #ccc;"
        "padding:3px 6px}table{border-collapse:collapse}.holds{background:#e6f4e6}"
        ".fails{background:#fbe9e7}.bad{background:#f8c0c0}img{max-width:100%}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>jaxbof verify</title>"
        f"<style>{style}</style></head><body><h1>jaxbof verify</h1>"
        f"<p>{html.escape(json.dumps(prov))}</p><table><tr><th>claim</th><th>experiment"
        "</th><th>statement</th><th>estimate [95% interval]</th><th>criterion</th>"
        "<th>verdict</th><th>expected</th></tr>"
        + "".join(rows)
        + "</table><h2>Claims</h2>"
        + details
        + "<h2>Pictures</h2>"
        + "".join(pictures)
        + "</body></html>\n"
    )


def report(results: Sequence[Result], out) -> tuple[list[str], int]:
    """Write the report into `out`; (the verdict table's lines, exit code: 1 where a verdict
    contradicts its expectation, else 0)."""
    paths = write(results, out)
    lines = table(results) + [f"wrote {p}" for p in paths]
    return lines, int(any(r.contradicts for r in results))
