"""The files of one experiment (Korol et al., Sec. III): ``NAME.json``, ``NAME.md`` and ``NAME.png`` in one folder,
each written atomically, so that every ``edgeskip experiment`` command leaves the same three."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeskip_runtime.atomic import write_json, write_text


def write_experiment(out: str | Path, name: str, doc: dict[str, Any], markdown: Callable[[dict[str, Any]], str],
                     plot: Callable[[dict[str, Any], Path], None]) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / f"{name}.json", doc)
    write_text(out / f"{name}.md", markdown(doc))
    plot(doc, out / f"{name}.png")
