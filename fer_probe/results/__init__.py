"""What a run leaves behind: metrics, the run directory's files, report.md, figures, and comparisons of runs."""
