"""Reading the user's YAML files (search space, enqueue list, expectations) the way people write them.

PyYAML follows YAML 1.1, where a float needs a dot: `1e-3` (and JSON's `1e-3`) would load as the
text '1e-3', so `low: 1e-3` would be refused as "not a number". `Loader` also reads `1e-3`,
`1E+6` and `-2e5` as floats (YAML 1.2 does); everything else is yaml.SafeLoader's.
"""

from __future__ import annotations

import re
from typing import Any

import yaml


class Loader(yaml.SafeLoader):
    """SafeLoader plus exponent floats without a dot."""


Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load(text: str | bytes) -> Any:
    """The one document in `text` (bytes: UTF-8, or UTF-16 after a BOM); raises yaml.YAMLError."""
    return yaml.load(text, Loader=Loader)  # noqa: S506 - a SafeLoader subclass
