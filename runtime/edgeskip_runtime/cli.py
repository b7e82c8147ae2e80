"""``edgeskip-runtime``: the board's command line (no torch, no compiler, no click).

    edgeskip-runtime info BUNDLE       verify a bundle and print what it holds
    edgeskip-runtime profile BUNDLE    time every configuration here (see profile.py)
    edgeskip-runtime serve BUNDLE      the adaptive Open Inference Protocol server

``edgeskip serve`` and ``edgeskip profile`` on a workstation run these same commands.
"""

from __future__ import annotations

import argparse
import json
import sys

from edgeskip_runtime.bundle import Bundle
from edgeskip_runtime.errors import EdgeskipError


def _driver(requested: str | None) -> str:
    """The IREE driver for this machine; says so on stderr when it is not the one asked for."""
    from edgeskip_runtime.arch import choose_driver

    driver, why = choose_driver(requested)
    if why:
        print(why, file=sys.stderr, flush=True)
    return driver


DRIVER_HELP = ("IREE CPU driver (default local-sync; local-task does not exist on 32-bit ARM, where local-sync is "
               "used instead)")


def _info(args: argparse.Namespace) -> None:
    b = Bundle.open(args.bundle)
    print(json.dumps({"target": b.target_name, "arch": b.arch, "function": b.function,
                      "image": b.input("image").shape, "cfg": b.input("cfg").shape,
                      "configs": len(b.pareto.configs)}, indent=2))


def _profile(args: argparse.Namespace) -> None:
    from edgeskip_runtime.profile import profile_bundle

    doc = profile_bundle(args.bundle, driver=_driver(args.driver), pin=not args.no_pin, repeats=args.repeats,
                         warmup=args.warmup)
    for c in doc["configs"]:
        print(f"skip {c['n_skipped']:3d}: {c['latency_ms']:8.3f} ms  val {c['val_accuracy']:.4f}")


def _serve(args: argparse.Namespace) -> None:
    from edgeskip_runtime.policies import PolicySettings
    from edgeskip_runtime.server import InferenceEngine, serve
    from edgeskip_runtime.server.decision_log import DecisionLog

    tiers = {}
    for item in args.tier or []:
        prio, _, max_skipped = item.partition("=")
        tiers[int(prio)] = int(max_skipped)
    settings = PolicySettings(min_acc=args.min_acc, min_skipped=args.min_skipped, max_skipped=args.max_skipped,
                              delta_req_ms=args.delta_req_ms, static_config=args.static_config,
                              target_utilization=args.target_utilization, dwell_s=args.dwell_s,
                              default_budget_ms=args.default_budget_ms, tier_max_skipped=tiers)
    log = DecisionLog(args.decision_log, max_bytes=args.log_max_bytes, backups=args.log_backups)
    engine = InferenceEngine(args.bundle, policy=args.policy, settings=settings, driver=_driver(args.driver),
                             pin=not args.no_pin, max_queue=args.max_queue, decision_log=log, sla_ms=args.sla_ms)
    serve(engine, args.host, args.port, max_body_bytes=args.max_body_bytes, max_connections=args.max_connections,
          idle_timeout_s=args.idle_timeout_s, drain_s=args.drain_s)


def _add_serve(sub: argparse._SubParsersAction) -> None:
    from edgeskip_runtime.policies import list_policies

    p = sub.add_parser("serve", help="serve a bundle over HTTP (Open Inference Protocol) with a depth policy",
                       description="Serve BUNDLE, one request at a time in the module, on the target's serving cores. "
                                   "A request that arrives while one runs is dropped with 503 (or queued with "
                                   "--max-queue). The policy picks the skip configuration of every processed "
                                   "request.")
    p.add_argument("bundle")
    p.add_argument("--policy", default="algorithm1", choices=list_policies())
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--min-acc", type=float, default=None,
                   help="drop configurations below this accuracy (default: no-skip accuracy - 0.10)")
    p.add_argument("--delta-req-ms", type=float, default=None,
                   help="algorithm1/performance-aware: idle time before skipping one block less (default: the "
                        "no-skip service time measured here, module plus the server's own handling, calibrated "
                        "at start and tracked online)")
    p.add_argument("--min-skipped", type=int, default=0, help="depth ceiling: always skip at least this many")
    p.add_argument("--max-skipped", type=int, default=None, help="depth floor: never skip more than this many")
    p.add_argument("--static-config", type=int, default=0, help="static: index of the configuration to use")
    p.add_argument("--target-utilization", type=float, default=0.8, help="load-aware/priority: target load")
    p.add_argument("--dwell-s", type=float, default=None,
                   help="load-aware/priority: minimum time between changes (default: 20 no-skip service times)")
    p.add_argument("--default-budget-ms", type=float, default=None, help="budget: for requests without a budget")
    p.add_argument("--tier", action="append", metavar="PRIORITY=MAX_SKIPPED",
                   help="priority: requests of at least PRIORITY skip at most MAX_SKIPPED blocks (repeatable)")
    p.add_argument("--max-queue", type=int, default=0, help="queue up to N requests instead of dropping (default 0)")
    p.add_argument("--sla-ms", type=float, default=None, help="count processed requests slower than this")
    p.add_argument("--driver", choices=["local-sync", "local-task"], default=None, help=DRIVER_HELP)
    p.add_argument("--no-pin", action="store_true", help="do not pin the worker to the target's serving cores")
    p.add_argument("--decision-log", default=None, help="JSON-lines file of every decision (rotated)")
    p.add_argument("--log-max-bytes", type=int, default=10 << 20)
    p.add_argument("--log-backups", type=int, default=5)
    p.add_argument("--max-body-bytes", type=int, default=8 << 20, help="larger requests get 413")
    p.add_argument("--max-connections", type=int, default=64,
                   help="open connections served at once (a thread each); beyond, an immediate 503 and close")
    p.add_argument("--idle-timeout-s", type=float, default=30.0,
                   help="close a keep-alive connection idle this long, or one that sends its request this slowly")
    p.add_argument("--drain-s", type=float, default=10.0,
                   help="on SIGTERM/SIGINT: at most this long to answer the admitted requests before exiting")
    p.set_defaults(run=_serve)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="edgeskip-runtime", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="verify a bundle and print what it holds")
    info.add_argument("bundle")
    info.set_defaults(run=_info)
    prof = sub.add_parser("profile", help="time every configuration of a bundle on this machine")
    prof.add_argument("bundle")
    prof.add_argument("--driver", choices=["local-sync", "local-task"], default=None, help=DRIVER_HELP)
    prof.add_argument("--repeats", type=int, default=100)
    prof.add_argument("--warmup", type=int, default=10)
    prof.add_argument("--no-pin", action="store_true")
    prof.set_defaults(run=_profile)
    _add_serve(sub)
    args = ap.parse_args(argv)
    try:
        args.run(args)
    except EdgeskipError as e:  # anything else is a bug: keep its traceback
        hint = f" (option --{e.setting.replace('_', '-')})" if e.setting else ""
        print(f"error: {e}{hint}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
