"""Experiments that plug into the engine (engine.Experiment), and the published presets.

classification  Karhadkar et al. (NeurIPS 2024): hinge-loss GD on noisy labels
regression      Park et al. (2024): square-loss gradient flow in the NTK regime
presets         named published protocols
optimizers      the optimizer study: both experiments under GD, momentum and Adam
"""

from jaxbof.experiments.presets import FIG1, FIG1_QUICK, FIG2, FIG2_QUICK, PRESETS, Preset, preset

__all__ = ["FIG1", "FIG1_QUICK", "FIG2", "FIG2_QUICK", "PRESETS", "Preset", "preset"]
