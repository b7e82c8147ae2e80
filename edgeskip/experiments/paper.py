"""The published numbers the experiments print beside their own (Korol et al., Sec. III-C, Table I and
the Figure 6 text). CIFAR-10 and CIFAR-100; edgeskip's embedded dataset is Fashion-MNIST, so these are
references, not targets to equal."""

from __future__ import annotations

# Table I: accuracy change (points), processed inferences x and inferences per Watt x, against Original.
TABLE1: dict[str, dict[str, dict[str, float]]] = {
    "cifar10": {
        "resnet20": {"skipnet_acc": 2.83, "ours_acc": -6.64, "skipnet_proc": 0.94, "ours_proc": 1.48,
                     "skipnet_ipw": 0.97, "ours_ipw": 1.54},
        "resnet110": {"skipnet_acc": 2.27, "ours_acc": -3.13, "skipnet_proc": 1.47, "ours_proc": 1.97,
                      "skipnet_ipw": 1.46, "ours_ipw": 2.00},
    },
    "cifar100": {
        "resnet20": {"skipnet_acc": 0.26, "ours_acc": -2.40, "skipnet_proc": 0.94, "ours_proc": 1.15,
                     "skipnet_ipw": 0.95, "ours_ipw": 1.18},
        "resnet110": {"skipnet_acc": 2.88, "ours_acc": -0.71, "skipnet_proc": 1.28, "ours_proc": 1.22,
                      "skipnet_ipw": 1.29, "ours_ipw": 1.26},
    },
}

# Figure 6 (text of Sec. III-C): SkipNet's speedup over Original, and the skipped-block count beyond which
# Ours is faster than SkipNet (CIFAR-10).
FIGURE6: dict[str, dict[str, float | None]] = {
    "resnet20": {"skipnet_speedup": 0.96, "ours_overtakes_skipnet_at": 0, "ours_max_speedup": 3.33},
    "resnet110": {"skipnet_speedup": 1.50, "ours_overtakes_skipnet_at": 14, "ours_max_speedup": 19.7},
}

# Figure 1 (ResNet-110, CIFAR-10): at N = 37 skipped blocks the best and worst configuration differ widely.
FIGURE1_N = 37
FIGURE1_GAP_POINTS = 49.61  # accuracy gap between the best and worst configuration at N = 37

# Figure 6, ResNet-110 / CIFAR-10: within 1 point of Original until ~20 of 54 blocks; 36 at a 10-point drop.
WITHIN_1_POINT = {"resnet110": (20, 54)}
WITHIN_10_POINTS = {"resnet110": (36, 54)}
