"""The paper's evaluation as commands (Korol et al., Sec. III): Figure 1, Figure 6 and Table I, each
from checkpoints and compiled bundles, each writing JSON, a PNG and markdown beside the paper's numbers.

``paper.py`` holds the published figures; ``single_point.py`` measures a one-point bundle (Original,
SkipNet) on the test split; ``figure6.py`` and ``table1.py`` build the two comparisons.
"""
