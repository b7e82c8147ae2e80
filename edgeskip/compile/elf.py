"""Read the facts of a compiled executable from its ELF file, in pure Python (no binutils needed).

Used to check that a bundle's code is for its board (Korol et al., Sec. II-A.2: compiled for the
Odroid XU4): machine, 32/64-bit class, and on 32-bit ARM the float ABI from the header flags and
the build attributes of ``.ARM.attributes`` (CPU name, FP architecture, NEON), what
``readelf -h`` / ``readelf -A`` print; and the undefined dynamic symbols (``readelf --dyn-syms``),
which IREE's loader refuses.
"""

from __future__ import annotations

import contextlib
import struct
from pathlib import Path
from typing import Any

from edgeskip.compile.errors import CompileError
from edgeskip.targets import Target

MACHINES = {3: "x86", 40: "ARM", 62: "x86_64", 183: "AArch64", 243: "RISC-V"}
ARCH_MACHINE = {"x86_64": "x86_64", "aarch64": "AArch64", "armv7l": "ARM", "riscv64": "RISC-V"}
EF_ARM_ABI_FLOAT_HARD, EF_ARM_ABI_FLOAT_SOFT = 0x400, 0x200
# ARM build attributes (ARM IHI 0045): tag numbers and the values this module names.
TAG_CPU_NAME, TAG_CPU_ARCH, TAG_FP_ARCH, TAG_SIMD_ARCH, TAG_ABI_VFP_ARGS = 5, 6, 10, 12, 28
CPU_ARCH = {10: "v7", 13: "v7E-M", 14: "v8-A"}
FP_ARCH = {0: "none", 1: "VFPv1", 2: "VFPv2", 3: "VFPv3", 4: "VFPv3-D16", 5: "VFPv4", 6: "VFPv4-D16", 7: "FP-ARMv8"}
SIMD_ARCH = {0: "none", 1: "NEONv1", 2: "NEONv2 (with FMA)", 3: "ARMv8 NEON"}


def _uleb(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def _cstr(data: bytes, i: int) -> tuple[str, int]:
    end = data.index(b"\0", i)
    return data[i:end].decode("ascii", "replace"), end + 1


def parse_arm_attributes(data: bytes) -> dict[int, int | str]:
    """The file-scope attributes of the "aeabi" vendor subsection of an .ARM.attributes section."""
    out: dict[int, int | str] = {}
    if not data or data[0] != ord("A"):
        return out
    i = 1
    while i + 4 <= len(data):
        (length,) = struct.unpack_from("<I", data, i)
        end = i + length
        vendor, j = _cstr(data, i + 4)
        while vendor == "aeabi" and j < end:
            tag, size = data[j], struct.unpack_from("<I", data, j + 1)[0]
            k, sub_end = j + 5, j + size
            while tag == 1 and k < sub_end:  # tag 1: attributes of the whole file
                attr, k = _uleb(data, k)
                # Strings: tags 4, 5, 67 and odd tags > 32 (except 65); tag 32 is uleb + string.
                if attr in (4, 5, 67) or (attr > 32 and attr % 2 == 1 and attr != 65):
                    out[attr], k = _cstr(data, k)
                elif attr == 32:
                    _, k = _uleb(data, k)
                    out[attr], k = _cstr(data, k)
                else:
                    out[attr], k = _uleb(data, k)
            j = sub_end
        i = end if length else len(data)
    return out


def read_elf(path: str | Path) -> dict[str, Any]:
    """Class, machine, ABI flags and (32-bit ARM) build attributes of one ELF file."""
    return read_elf_bytes(Path(path).read_bytes(), Path(path).name)


def embedded_elfs(vmfb: bytes) -> list[dict[str, Any]]:
    """The ELF executables embedded in a ``.vmfb`` (IREE stores them whole, each starting with the ELF magic)."""
    out, start = [], vmfb.find(b"\x7fELF")
    while start >= 0:
        # Magic bytes that happen to sit inside other data do not parse: skip them.
        with contextlib.suppress(CompileError, struct.error, KeyError, IndexError, ValueError):
            out.append(read_elf_bytes(vmfb[start:], f"vmfb+{start}"))
        start = vmfb.find(b"\x7fELF", start + 4)
    return out


def read_elf_bytes(data: bytes, path: str) -> dict[str, Any]:
    """Like :func:`read_elf`, for an ELF image held in memory (``data`` starts at the ELF header)."""
    if data[:4] != b"\x7fELF":
        raise CompileError(f"{path} is not an ELF file")
    bits = {1: 32, 2: 64}[data[4]]
    endian = "<" if data[5] == 1 else ">"
    if bits == 32:
        e_machine, = struct.unpack_from(endian + "H", data, 18)
        e_flags, = struct.unpack_from(endian + "I", data, 36)
        shoff, = struct.unpack_from(endian + "I", data, 32)
        shentsize, shnum, shstrndx = struct.unpack_from(endian + "HHH", data, 46)
    else:
        e_machine, = struct.unpack_from(endian + "H", data, 18)
        e_flags, = struct.unpack_from(endian + "I", data, 48)
        shoff, = struct.unpack_from(endian + "Q", data, 40)
        shentsize, shnum, shstrndx = struct.unpack_from(endian + "HHH", data, 58)
    sections, types, links = [], [], []
    for n in range(shnum):
        off = shoff + n * shentsize
        if bits == 32:
            name, stype, _flags, _addr, offset, size, link, _info, align = struct.unpack_from(endian + "IIIIIIIII",
                                                                                               data, off)
        else:
            name, stype, _flags, _addr, offset, size, link, _info, align = struct.unpack_from(endian + "IIQQQQIIQ",
                                                                                               data, off)
        sections.append((name, offset, size, align))
        types.append(stype)
        links.append(link)
    names_off = sections[shstrndx][1] if shnum else 0
    info: dict[str, Any] = {"file": path, "class": f"ELF{bits}",
                            "machine": MACHINES.get(e_machine, str(e_machine)),
                            "endianness": "little" if endian == "<" else "big"}
    # The code section's alignment: the largest function alignment in it (targets' cache_line_bytes).
    info["text_alignment"] = next((a for name, _o, _s, a in sections if _cstr(data, names_off + name)[0] == ".text"),
                                  None)
    info["undefined_symbols"] = _undefined_dynamic_symbols(data, sections, types, links, bits, endian)
    if e_machine == 40:
        info["eabi_version"] = e_flags >> 24
        info["float_abi"] = ("hard" if e_flags & EF_ARM_ABI_FLOAT_HARD else
                             "soft" if e_flags & EF_ARM_ABI_FLOAT_SOFT else "unspecified")
        for name, offset, size, _align in sections:
            if _cstr(data, names_off + name)[0] == ".ARM.attributes":
                attrs = parse_arm_attributes(data[offset:offset + size])
                info["cpu_name"] = attrs.get(TAG_CPU_NAME)
                info["cpu_arch"] = CPU_ARCH.get(attrs.get(TAG_CPU_ARCH), attrs.get(TAG_CPU_ARCH))
                info["fp_arch"] = FP_ARCH.get(attrs.get(TAG_FP_ARCH, 0), attrs.get(TAG_FP_ARCH))
                info["simd_arch"] = SIMD_ARCH.get(attrs.get(TAG_SIMD_ARCH, 0), attrs.get(TAG_SIMD_ARCH))
                hard = attrs.get(TAG_ABI_VFP_ARGS) == 1
                info["vfp_args"] = "VFP registers (hard-float)" if hard else "core registers"
    return info


SHT_DYNSYM = 11


def _undefined_dynamic_symbols(data: bytes, sections: list[tuple[int, int, int, int]], types: list[int],
                               links: list[int], bits: int, endian: str) -> list[str]:
    """Names in ``.dynsym`` with no section (``SHN_UNDEF``): what the executable imports. IREE's
    embedded-ELF loader resolves no imports, so a module with any is refused at load time."""
    out = []
    for k, stype in enumerate(types):
        if stype != SHT_DYNSYM:
            continue
        _name, offset, size, _align = sections[k]
        strtab = sections[links[k]][1]
        entry = 16 if bits == 32 else 24
        for i in range(1, size // entry):  # entry 0 is the null symbol
            base = offset + i * entry
            if bits == 32:
                st_name, _value, _size, _info, _other, shndx = struct.unpack_from(endian + "IIIBBH", data, base)
            else:
                st_name, _info, _other, shndx, _value, _size = struct.unpack_from(endian + "IBBHQQ", data, base)
            if shndx == 0 and st_name:
                out.append(_cstr(data, strtab + st_name)[0])
    return sorted(out)


def describe_executables(dump_dir: Path, target: Target) -> list[dict[str, Any]]:
    """Facts of each dumped executable; raise if one is not for the target's machine or float ABI."""
    files = sorted(p for p in Path(dump_dir).glob("*") if p.is_file() and p.read_bytes()[:4] == b"\x7fELF")
    if not files:
        raise CompileError(f"IREE dumped no ELF executable into {dump_dir}")
    facts = [read_elf(p) for p in files]
    want = ARCH_MACHINE.get(target.arch)
    for f in facts:
        if want and f["machine"] != want:
            raise CompileError(f"target {target.name} ({target.arch}) but IREE produced {f['machine']} code "
                               f"({f['file']})")
        if target.float_abi and f.get("float_abi") not in (None, target.float_abi):
            raise CompileError(f"target {target.name} wants the {target.float_abi}-float ABI, "
                               f"IREE produced {f['float_abi']}-float code ({f['file']})")
        if f["undefined_symbols"]:
            raise CompileError(
                f"executable {f['file']} for {target.name} imports {f['undefined_symbols']}; IREE's embedded-ELF "
                f"loader resolves no imports, so a stock runtime would refuse this bundle. Define them in the "
                f"target's link_bitcode (see targets/odroid_xu4.py and docs/iree-32bit-arm-bugs.md)")
    return facts
