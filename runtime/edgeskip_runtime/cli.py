"""``edgeskip-runtime``: the board's command line (no torch, no compiler, no click).

    edgeskip-runtime info BUNDLE       verify a bundle and print what it holds
    edgeskip-runtime profile BUNDLE    time every configuration here (see profile.py)
"""

from __future__ import annotations

import argparse
import json
import sys

from edgeskip_runtime.bundle import Bundle, BundleError
from edgeskip_runtime.pareto import ParetoFileError


def _info(args: argparse.Namespace) -> None:
    b = Bundle.open(args.bundle)
    print(json.dumps({"target": b.target_name, "arch": b.arch, "function": b.function,
                      "image": b.input("image").shape, "cfg": b.input("cfg").shape,
                      "configs": len(b.pareto.get("configs", []))}, indent=2))


def _profile(args: argparse.Namespace) -> None:
    from edgeskip_runtime.profile import profile_bundle

    doc = profile_bundle(args.bundle, driver=args.driver, pin=not args.no_pin, repeats=args.repeats,
                         warmup=args.warmup)
    for c in doc["configs"]:
        print(f"skip {c['n_skipped']:3d}: {c['latency_ms']:8.3f} ms  val {c['val_accuracy']:.4f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="edgeskip-runtime", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="verify a bundle and print what it holds")
    info.add_argument("bundle")
    info.set_defaults(run=_info)
    prof = sub.add_parser("profile", help="time every configuration of a bundle on this machine")
    prof.add_argument("bundle")
    prof.add_argument("--driver", choices=["local-sync", "local-task"], default="local-sync")
    prof.add_argument("--repeats", type=int, default=100)
    prof.add_argument("--warmup", type=int, default=10)
    prof.add_argument("--no-pin", action="store_true")
    prof.set_defaults(run=_profile)
    args = ap.parse_args(argv)
    try:
        args.run(args)
    except (BundleError, ParetoFileError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
