"""Names that become paths, object keys and registered-model names: checked before they are used."""

from __future__ import annotations

import re

from tasks.errors import TuneflowError

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def check_name(name: object, what: str = "dataset name") -> str:
    """Lower-case letters, digits, '-' and '_', 1-63 characters, starting with a letter or digit."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise TuneflowError(f"Bad {what} {name!r}.", "use 1-63 lower-case letters, digits, '-' or '_', starting with a letter or digit.")
    return name
