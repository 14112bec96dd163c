"""The evaluation protocols: subject-independent folds, cross-validation (cv), cross-dataset transfer (cross) and
ablations (ablate), sharing one engine (engine) and one way of writing a run (runs)."""
