"""Training every candidate probe of every fold from one read of each clip (train), the update's schedules and
clipping (optim), and the posteriors of test and validation videos (scoring)."""
