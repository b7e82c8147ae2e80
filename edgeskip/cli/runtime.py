"""On-device commands (Korol et al., Sec. II-B, III-B): profile and serve a compiled bundle on this machine.

They call :mod:`edgeskip_runtime`, which runs on a board without torch or the compiler;
the board's own entry point is ``edgeskip-runtime`` with the same commands.
"""

from __future__ import annotations

from pathlib import Path

import click

from edgeskip.cli import main


@main.command()
@click.argument("bundle", type=click.Path(file_okay=False, path_type=Path))
@click.option("--driver", type=click.Choice(["local-sync", "local-task"]), default="local-sync", show_default=True)
@click.option("--repeats", type=click.IntRange(min=1), default=100, show_default=True,
              help="Timed runs per configuration (after warm-up).")
@click.option("--warmup", type=click.IntRange(min=0), default=10, show_default=True)
@click.option("--pin/--no-pin", default=True, show_default=True, help="Pin to the target's serving cores.")
@click.option("--no-refilter", is_flag=True, help="Keep every configuration instead of re-filtering the front.")
def profile(bundle: Path, driver: str, repeats: int, warmup: int, pin: bool, no_refilter: bool) -> None:
    """Measure each configuration's latency on this machine (median, p90, p99).

    Writes the figures into BUNDLE/pareto.json with their source and re-filters the front on
    measured latency. Run on the board, this is the Pareto front on real execution time.
    """
    from edgeskip_runtime.profile import profile_bundle

    doc = profile_bundle(bundle, driver=driver, pin=pin, warmup=warmup, repeats=repeats, refilter=not no_refilter)
    for c in doc["configs"]:
        click.echo(f"skip {c['n_skipped']:3d}: {c['latency_ms']:8.3f} ms (p99 {c['latency_p99_ms']:.3f})  "
                   f"val {c['val_accuracy']:.4f}")
    p = doc["profiled"]
    click.echo(f"{p['configs_after']} of {p['configs_before']} configurations on the measured front")


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def serve(args: tuple[str, ...]) -> None:
    """Serve a bundle over HTTP with an adaptive depth policy (see `edgeskip serve --help`).

    The same server as the board's `edgeskip-runtime serve`: Open Inference Protocol routes,
    one pinned worker, drop-when-busy, policies algorithm1/static/load-aware/budget/priority,
    Prometheus /metrics, hot reload.
    """
    from edgeskip_runtime.cli import main as runtime_main

    raise SystemExit(runtime_main(["serve", *args]))


@main.command()
@click.argument("target")
@click.option("--workload", default="paper", show_default=True,
              help="paper, phased, bursts, poisson, trace, or loadgen (MLPerf LoadGen Server scenario; URL only).")
@click.option("--requests", "n", type=click.IntRange(min=1), default=200, show_default=True,
              help="Requests per run.")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), default=None, help="Requests per second.")
@click.option("--period-ms", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Time between requests (default: --period-factor x the no-skip service time the runtime "
                   "measured: module plus its own per-request handling).")
@click.option("--period-factor", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Below 1 overloads the static no-skip baseline.")
@click.option("--trace", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Arrival offsets in seconds (trace workload).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--compare", is_flag=True,
              help="Run static no-skip and --policy on the same arrivals: Table I ratios and their ideal bound.")
@click.option("--repeats", type=click.IntRange(min=1), default=1, show_default=True,
              help="--compare: alternating (static, policy) pairs on the same arrivals; --sweep: runs per "
                   "(policy, regime). Results are pooled (a shared machine's speed drifts over seconds).")
@click.option("--sweep", is_flag=True,
              help="Every policy over every load regime (period x2.0 .. x0.5, phased, bursts): sweep.json, "
                   "sweep.md and plots.")
@click.option("--policies", default=None, help="Sweep: comma-separated subset of the policies.")
@click.option("--regimes", default=None,
              help="Sweep: comma-separated subset of the regimes (e.g. 'period x0.6,phased').")
@click.option("--policy", default="algorithm1", show_default=True, help="Policy for the adaptive run of --compare.")
@click.option("--budget-ms", type=float, default=None, help="latency_budget_ms sent with every request.")
@click.option("--sla-ms", type=float, default=None, help="Count processed requests slower than this.")
@click.option("--send-labels", is_flag=True,
              help="Send each image's label (the performance-aware policy then uses online accuracy).")
@click.option("--dataset", default=None, help="Dataset of the test images (default: the bundle's).")
@click.option("--data-dir", default=None)
@click.option("--pin/--no-pin", default=False, show_default=True,
              help="In-process: pin the worker to the target's serving cores.")
@click.option("--decision-log", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="In-process: write every decision here (JSON lines).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/bench"),
              show_default=True)
def bench(target: str, n: int, out: Path, policies: str | None, regimes: str | None, **options) -> None:
    """Send a seeded workload to TARGET and report what happened.

    TARGET is a server URL (http://HOST:PORT: what a client sees, HTTP included) or a bundle
    directory (in-process: the server's own engine driven directly, no network, as the paper
    measured "from within the runtime"). Reports say which path their numbers come from.

    Writes OUT/bench.json, bench.md, timeline.png and skipped_histogram.png: processed and
    dropped requests, online accuracy, latency p50/p99, SLA violations, depth distribution,
    configuration switches, energy and inferences per joule. With --compare, also the paper's
    Table I ratios; with --sweep, OUT/sweep.json, sweep.md and its plots.
    """
    from edgeskip.evaluation.runner import BenchOptions, run_bench, summary_lines

    opts = BenchOptions(requests=n, out=out, rate_hz=options.pop("rate"),
                        policies=policies.split(",") if policies else None,
                        regimes=regimes.split(",") if regimes else None, **options)
    for line in summary_lines(run_bench(target, opts)):
        click.echo(line)
    click.echo(f"report in {out}/{'sweep' if opts.sweep else 'bench'}.md")
