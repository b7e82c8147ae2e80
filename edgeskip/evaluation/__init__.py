"""Evaluation (Korol et al., Sec. III): workload generator, OIP client, bench runs and reports."""
