"""simpl-bench analysis: read a grid's results (`load`), aggregate them with rliable (`aggregate`), draw the
paper's figures (`plots`) and write the report (`python -m analysis.report results/<grid>`)."""

from analysis.load import AnalysisError, Grid, Run, SuiteScores, scan_grid, suite_scores

__all__ = ["AnalysisError", "Grid", "Run", "SuiteScores", "scan_grid", "suite_scores"]
