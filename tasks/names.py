"""Names that become paths, object keys and registered-model names: checked before they are used.

- dataset (and landing zone) names: lower-case, they name folders and `tuneflow-NAME` models;
- study names: also upper-case, '.', '@', '+' and '=' (default names hold the metric, e.g.
  `churn-1a2b3c4d-binary-auc-5e6f7a8b`, and XGBoost metrics may read `ndcg@5` or `error@0.7`);
- registered model names: also upper-case and '.' (`Churn.Model`), never '/' or '@' (a
  `models:/NAME@ALIAS` URI would read another model).
None starts with anything but a letter or a digit, so none is '.', '..' or a hidden file.
"""

from __future__ import annotations

import re

from tasks.errors import TuneflowError

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
STUDY_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+=-]{0,199}$")
MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def check_name(name: object, what: str = "dataset name") -> str:
    """Lower-case letters, digits, '-' and '_', 1-63 characters, starting with a letter or digit."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise TuneflowError(f"Bad {what} {name!r}.", "use 1-63 lower-case letters, digits, '-' or '_', starting with a letter or digit.")
    return name


def check_study_name(name: object, what: str = "study name") -> str:
    """Letters, digits, '-', '_', '.', '@', '+', '=', 1-200 characters, starting with a letter or digit."""
    if not isinstance(name, str) or not STUDY_NAME_PATTERN.match(name):
        raise TuneflowError(f"Bad {what} {_shown(name)}.",
                            "use 1-200 letters, digits, '-', '_', '.', '@', '+' or '=', starting with a letter or digit.")
    return name


def check_model_name(name: object, what: str = "model name") -> str:
    """Letters, digits, '-', '_' and '.', 1-128 characters, starting with a letter or digit."""
    if not isinstance(name, str) or not MODEL_NAME_PATTERN.match(name):
        raise TuneflowError(f"Bad {what} {_shown(name)}.", "use 1-128 letters, digits, '-', '_' or '.', starting with a letter or digit.")
    return name


def _shown(value: object) -> str:
    return repr(value)[:80] + ("..." if len(repr(value)) > 80 else "")
