; A definition of the ARM EHABI personality routine __aeabi_unwind_cpp_pr0, linked into every
; armv7 executable (targets/__init__.py, Target.link_bitcode; why: docs/iree-32bit-arm-bugs.md).
;
; LLVM's ARM backend writes an .ARM.exidx unwind entry for each dispatch function that is not
; `nounwind`, and with it a reference to this routine. IREE 3.13's embedded linker leaves the
; reference undefined (an import), and IREE's embedded-ELF loader accepts no imports, so a stock
; runtime refuses the module. Nothing in an IREE executable ever unwinds (no C++ exceptions, no
; stack walks), so the routine is never called; it only has to exist. `llvm.used` keeps it
; through IREE's link-only-needed bitcode linking and dead-code elimination.
;
; Typed pointers (LLVM 14 syntax): a newer LLVM reads older bitcode, not the reverse.
; Regenerate the .bc with: python targets/bitcode/assemble.py  (needs llvmlite, not a dependency)
target datalayout = "e-m:e-p:32:32-Fi8-i64:64-v128:64:128-a:0:32-n32-S64"
target triple = "armv7a-pc-linux-gnueabihf"

@llvm.used = appending global [1 x i8*] [i8* bitcast (void ()* @__aeabi_unwind_cpp_pr0 to i8*)], section "llvm.metadata"

define void @__aeabi_unwind_cpp_pr0() nounwind {
  ret void
}
