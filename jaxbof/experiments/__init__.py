"""Experiments that plug into the engine (engine.Experiment), one package each.

classification  Karhadkar et al. (NeurIPS 2024): hinge-loss GD on noisy labels
regression      Park et al. (2024): square-loss gradient flow in the NTK regime
optimizers      the optimizer study: both experiments under GD, momentum and Adam
"""
