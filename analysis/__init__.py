"""MLflow -> pandas -> the paper's tables and figures (used by summarize.py, the notebook and the tests)."""
