"""The Optuna side of tuning: study storage, search spaces, the ask/tell loop and its liveness."""
