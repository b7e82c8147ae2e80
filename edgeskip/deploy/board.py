"""What a board is (``edgeskip board-check``; README, "Deploy to a board"): the facts a deploy needs, over ssh.

The paper's adaptive runtime runs on the Odroid XU4 (Korol et al., Sec. II-B / III-B), a
big.LITTLE board; serving is pinned to the big cores, so telling them apart matters. Cores are
classified by their cpufreq maxima (``cpuinfo_max_freq``); a board without cpufreq is reported
as such instead of guessed. The facts are matched against the ``targets/`` registry.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from edgeskip_runtime.arch import UNAVAILABLE_DRIVERS, arch_family, drivers_for

from edgeskip.deploy.ssh import SSHRunner, q

# ARM "CPU part" ids of the cores edge boards use, to name them when "model name" is generic.
_ARM_PARTS = {"0xc07": "Cortex-A7", "0xc0f": "Cortex-A15", "0xc09": "Cortex-A9", "0xd03": "Cortex-A53",
              "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57", "0xd08": "Cortex-A72",
              "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76", "0xd0d": "Cortex-A77"}

PACKAGES = ("iree-base-runtime", "edgeskip-runtime")

# One round trip: POSIX sh and /proc, /sys only (busybox boards have no lscpu).
_PROBE = r"""
echo "machine=$(uname -m)"
echo "kernel=$(uname -r)"
echo "hostname=$(uname -n)"
echo "model=$(grep -m1 -iE '^(model name|cpu model)[[:space:]]*:' /proc/cpuinfo 2>/dev/null | cut -d: -f2-)"
echo "hardware=$(grep -m1 -E '^Hardware[[:space:]]*:' /proc/cpuinfo 2>/dev/null | cut -d: -f2-)"
echo "board=$(tr -d '\0' < /proc/device-tree/model 2>/dev/null)"
grep -E '^(processor|CPU part)[[:space:]]*:' /proc/cpuinfo 2>/dev/null | tr -d ' \t' | sed 's/^/cpuinfo=/'
for c in /sys/devices/system/cpu/cpu[0-9]*; do
  [ -d "$c" ] || continue
  echo "core=${c##*/cpu}:$(cat "$c/cpufreq/cpuinfo_max_freq" 2>/dev/null)"
done
echo "deployed_current=$(readlink %(dir)s/current 2>/dev/null)"
echo "deployed_previous=$(readlink %(dir)s/previous 2>/dev/null)"
PY=%(python)s
if command -v "$PY" >/dev/null 2>&1; then
  echo "python_path=$(command -v "$PY")"
  "$PY" -c '
import json, platform, sys
out = {"version": platform.python_version(), "packages": {}}
try:
    from importlib import metadata
except ImportError:
    metadata = None
for name in sys.argv[1:]:
    try:
        out["packages"][name] = metadata.version(name) if metadata else None
    except Exception:
        out["packages"][name] = None
print("python=" + json.dumps(out))
' %(packages)s 2>/dev/null
fi
"""


@dataclass
class Core:
    index: int
    max_freq_khz: int | None
    part: str | None = None


@dataclass
class TargetMatch:
    name: str
    exact: bool  # architecture and core topology both match
    reason: str


@dataclass
class BoardFacts:
    address: str
    machine: str
    kernel: str
    hostname: str
    cpu_model: str
    board_model: str | None
    cores: list[Core]
    python_path: str | None
    python_version: str | None
    packages: dict[str, str | None]
    deploy_dir: str | None = None
    deployed: dict[str, str | None] = field(default_factory=dict)  # current/previous links in deploy_dir
    matches: list[TargetMatch] = field(default_factory=list)

    @property
    def arch(self) -> str:
        return arch_family(self.machine)

    @property
    def has_cpufreq(self) -> bool:
        return bool(self.cores) and all(c.max_freq_khz for c in self.cores)

    def clusters(self) -> tuple[list[int], list[int]] | None:
        """(big, LITTLE) core indices from cpufreq maxima: the slowest cluster is LITTLE when clocks differ.

        None when cpufreq is absent, so nothing is guessed.
        """
        if not self.has_cpufreq:
            return None
        lowest = min(c.max_freq_khz or 0 for c in self.cores)
        if all(c.max_freq_khz == lowest for c in self.cores):
            return [c.index for c in self.cores], []
        return ([c.index for c in self.cores if c.max_freq_khz != lowest],
                [c.index for c in self.cores if c.max_freq_khz == lowest])

    @property
    def target(self) -> TargetMatch | None:
        exact = [m for m in self.matches if m.exact]
        return (exact or self.matches or [None])[0]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        clusters = self.clusters()
        d.update(arch=self.arch, cpufreq=self.has_cpufreq, iree_drivers=drivers_for(self.arch),
                 big_cores=clusters[0] if clusters else None, little_cores=clusters[1] if clusters else None,
                 target=self.target.name if self.target else None)
        return d


def probe_board(runner: SSHRunner, *, python: str = "python3", dir: str = "/opt/edgeskip") -> BoardFacts:
    """Read the board's facts in one ssh round trip and match them against ``targets/``.

    ``dir`` is the deploy directory whose ``current`` and ``previous`` links are reported.
    """
    script = _PROBE % {"python": q(python), "packages": " ".join(q(p) for p in PACKAGES), "dir": q(dir)}
    out = runner.run(script, what="reading the board's facts").stdout
    values: dict[str, str] = {}
    cores: list[Core] = []
    parts: dict[int, str] = {}
    processor = -1
    py: dict[str, Any] = {}
    for line in out.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key == "core":
            index, _, freq = value.partition(":")
            if index.isdigit():
                cores.append(Core(int(index), int(freq) if freq.strip().isdigit() else None))
        elif key == "cpuinfo":
            name, _, v = value.partition(":")
            if name == "processor" and v.isdigit():
                processor = int(v)
            elif name == "CPUpart" and processor >= 0:
                parts[processor] = _ARM_PARTS.get(v.lower(), v)
        elif key == "python":
            try:
                py = json.loads(value)
            except json.JSONDecodeError:
                py = {}
        else:
            values[key] = value.strip()
    cores.sort(key=lambda c: c.index)
    for c in cores:
        c.part = parts.get(c.index)
    model = values.get("model") or values.get("hardware") or ""
    if not model or model.lower().startswith("armv"):  # "ARMv7 Processor rev 3 (v7l)" says little; name the cores
        names = sorted({p for p in parts.values()})
        model = " + ".join(names) + (f" ({model})" if model else "") if names else model or "unknown"
    facts = BoardFacts(
        address=str(runner.target), machine=values.get("machine", ""), kernel=values.get("kernel", ""),
        hostname=values.get("hostname", ""), cpu_model=model, board_model=values.get("board") or None,
        cores=cores, python_path=values.get("python_path"), python_version=py.get("version"),
        packages={name: (py.get("packages") or {}).get(name) for name in PACKAGES}, deploy_dir=dir,
        deployed={k: values.get(f"deployed_{k}") or None for k in ("current", "previous")})
    facts.matches = match_targets(facts)
    return facts


def match_targets(facts: BoardFacts) -> list[TargetMatch]:
    """Registered targets whose architecture family matches, exact (core topology too) ones first."""
    from edgeskip.targets import get_target, list_targets

    clusters = facts.clusters()
    matches: list[TargetMatch] = []
    for name in list_targets():
        t = get_target(name)
        if arch_family(t.arch) != facts.arch:
            continue
        if name == "host":
            # `host` is code for the compiling machine's own CPU: any board of its architecture may run it
            # only if its CPU has the same features, which a core count cannot tell.
            matches.append(TargetMatch(name, True, f"architecture {facts.arch} (host bundles carry code for the "
                                                   "compiling machine's CPU: the board's needs the same features)"))
            continue
        big, little = set(t.big_cores), set(t.little_cores)
        if clusters is not None:
            exact = (big, little) == (set(clusters[0]), set(clusters[1]))
            reason = ("architecture and big/LITTLE cores match" if exact else
                      f"architecture matches; cores differ (target big {sorted(big)} LITTLE {sorted(little)})")
        else:
            exact = len(big | little) == len(facts.cores)
            reason = (f"architecture and core count ({len(facts.cores)}) match; no cpufreq to check big/LITTLE"
                      if exact else f"architecture matches; {len(big | little)} cores expected, "
                                    f"{len(facts.cores)} found")
        matches.append(TargetMatch(name, exact, reason))
    matches.sort(key=lambda m: (not m.exact, m.name == "host"))  # a named board before the generic host
    return matches


def _ranges(indices: list[int]) -> str:
    out, start = [], None
    for i, v in enumerate(indices):
        if start is None:
            start = v
        if i + 1 == len(indices) or indices[i + 1] != v + 1:
            out.append(f"{start}" if start == v else f"{start}-{v}")
            start = None
    return ",".join(out)


def describe(facts: BoardFacts) -> str:
    """The human-readable report of ``edgeskip board-check``."""
    rows = [("board", f"{facts.address} ({facts.hostname})" + (f", {facts.board_model}" if facts.board_model else "")),
            ("arch", f"{facts.machine} (family {facts.arch}), Linux {facts.kernel}"),
            ("cpu", facts.cpu_model)]
    clusters = facts.clusters()
    if clusters is None:
        rows.append(("cores", f"{len(facts.cores)} ({_ranges([c.index for c in facts.cores])}); cpufreq is not "
                              "available (no cpuinfo_max_freq), so big and LITTLE cores cannot be told apart"))
    else:
        freq = {c.index: c.max_freq_khz or 0 for c in facts.cores}
        for label, idx in (("big", clusters[0]), ("LITTLE", clusters[1])):
            if idx:
                mhz = sorted({freq[i] // 1000 for i in idx})
                parts = sorted({c.part for c in facts.cores if c.index in idx and c.part})
                rows.append((f"{label} cores" if clusters[1] else "cores",
                             f"{len(idx)} ({_ranges(idx)}) at {'/'.join(map(str, mhz))} MHz max"
                             + (f", {', '.join(parts)}" if parts else "")))
    missing = UNAVAILABLE_DRIVERS.get(facts.arch, {})
    rows.append(("iree drivers", ", ".join(drivers_for(facts.arch))
                 + "".join(f" ({d} unavailable: {why})" for d, why in missing.items())))
    rows.append(("python", f"{facts.python_version} ({facts.python_path})" if facts.python_version
                 else "not found (python3 is needed to run edgeskip-runtime)"))
    for name, version in facts.packages.items():
        rows.append((name, version or "not installed"))
    if facts.deploy_dir:
        cur, prev = facts.deployed.get("current"), facts.deployed.get("previous")
        rows.append(("deployed", f"{facts.deploy_dir}/current -> {cur}" + (f", previous -> {prev}" if prev else "")
                     if cur else f"nothing in {facts.deploy_dir}"))
    t = facts.target
    if t is None:
        rows.append(("target", f"no registered target has architecture {facts.arch} (`edgeskip targets` lists them)"))
    else:
        rows.append(("target", f"{t.name}" + ("" if t.exact else " (partial match)") + f": {t.reason}"))
        for other in facts.matches[1:]:
            rows.append(("", f"also {other.name}: {other.reason}"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
