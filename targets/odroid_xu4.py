"""Hardkernel ODROID-XU4: Samsung Exynos 5422, 4x Cortex-A15 (big, 2.0 GHz) + 4x Cortex-A7 (LITTLE, 1.4 GHz).

The paper's board (Korol et al., Sec. II-A.2 and III). 32-bit ARM with a hard-float userland
(armhf); the IREE llvm-cpu default float ABI is softfp, so it is set explicitly.

``link_bitcode`` defines the ARM EHABI personality routine ``__aeabi_unwind_cpp_pr0`` inside
every executable. Without it each armv7 executable from iree-base-compiler 3.13 imports that
symbol (its unwind table references it), IREE's embedded-ELF loader accepts no imports, and a
stock runtime refuses the bundle (docs/iree-32bit-arm-bugs.md). The compile step checks
that no executable imports anything and records it in the manifest.
"""

from . import CorePower, PowerFigures, Target, register_target

register_target(Target(
    name="odroid-xu4",
    description="ODROID-XU4, Exynos 5422 big.LITTLE (4x Cortex-A15 + 4x Cortex-A7), armhf",
    triple="armv7a-pc-linux-gnueabihf",
    cpu="cortex-a15",
    features=("+neon", "+vfp4"),
    float_abi="hard",
    arch="armv7l",
    big_cores=(4, 5, 6, 7),  # Linux numbers the A7 cluster first on the Exynos 5422
    little_cores=(0, 1, 2, 3),
    serving_cores=(4, 5, 6, 7),
    link_bitcode=("arm_eabi_unwind_personality.bc",),
    power=PowerFigures(
        board_idle_w=2.5,
        cores={"big": CorePower(idle_w=0.05, busy_w=1.3), "little": CorePower(idle_w=0.01, busy_w=0.15)},
        source=("approximate: ODROID-XU3/XU4 on-board INA231 sensor readings as reported in the literature "
                "(A15 cluster about 1-1.5 W per busy core at 1.8-2.0 GHz, A7 about 0.1-0.2 W per busy core; "
                "board idle about 2-3 W incl. Ethernet/USB hub); measure your own board for exact figures"),
    ),
))
