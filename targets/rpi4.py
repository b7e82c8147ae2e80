"""Raspberry Pi 4 Model B: Broadcom BCM2711, 4x Cortex-A72 at 1.5-1.8 GHz, 64-bit Raspberry Pi OS.

An aarch64 edge board beside the paper's Odroid XU4 (Korol et al., Sec. II-A.2).
"""

from . import CorePower, PowerFigures, Target, register_target

register_target(Target(
    name="rpi4",
    description="Raspberry Pi 4 Model B, BCM2711 (4x Cortex-A72), aarch64",
    triple="aarch64-unknown-linux-gnu",
    cpu="cortex-a72",
    features=("+neon",),
    float_abi=None,
    arch="aarch64",
    big_cores=(0, 1, 2, 3),
    serving_cores=(3,),  # leave core 0 to interrupts and the OS
    power=PowerFigures(
        board_idle_w=2.7,
        cores={"big": CorePower(idle_w=0.0, busy_w=0.9)},
        source=("approximate: public USB power-meter measurements of the Pi 4B (about 2.7 W idle, "
                "6.4 W with all four cores under stress, i.e. about 0.9 W per busy core); "
                "measure your own board for exact figures"),
    ),
))
