"""Raspberry Pi 5: Broadcom BCM2712, 4x Cortex-A76 at 2.4 GHz, 64-bit Raspberry Pi OS.

An aarch64 edge board beside the paper's Odroid XU4 (Korol et al., Sec. II-A.2).
"""

from . import CorePower, PowerFigures, Target, register_target

register_target(Target(
    name="rpi5",
    description="Raspberry Pi 5, BCM2712 (4x Cortex-A76), aarch64",
    triple="aarch64-unknown-linux-gnu",
    cpu="cortex-a76",
    features=("+neon", "+dotprod", "+fullfp16"),
    float_abi=None,
    arch="aarch64",
    big_cores=(0, 1, 2, 3),
    serving_cores=(3,),
    power=PowerFigures(
        board_idle_w=2.7,
        cores={"big": CorePower(idle_w=0.0, busy_w=1.5)},
        source=("approximate: public USB power-meter measurements of the Pi 5 (about 2.7 W idle, "
                "about 8.5-9 W with all four cores under stress, i.e. about 1.5 W per busy core); "
                "measure your own board for exact figures"),
    ),
))
