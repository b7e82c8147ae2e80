"""Assemble the ``.ll`` files of this folder into the ``.bc`` files IREE links (``--iree-link-bitcode``).

Not run by the build: the ``.bc`` files are committed. It needs ``llvmlite`` (pip install
"llvmlite==0.43.0", LLVM 14), kept old on purpose: a newer LLVM reads older bitcode, not the
reverse, so bitcode from LLVM 14 loads into any IREE release of the last years.
"""

from __future__ import annotations

from pathlib import Path

import llvmlite.binding as llvm


def main() -> None:
    for ll in sorted(Path(__file__).parent.glob("*.ll")):
        module = llvm.parse_assembly(ll.read_text())
        module.verify()
        ll.with_suffix(".bc").write_bytes(module.as_bitcode())
        print(f"{ll.name} -> {ll.with_suffix('.bc').name} (LLVM {'.'.join(map(str, llvm.llvm_version_info))})")


if __name__ == "__main__":
    main()
