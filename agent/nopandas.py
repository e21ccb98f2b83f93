"""Keep pandas out of the agent process.

The agent never uses pandas, but pyarrow and DuckDB import it lazily the first time they check
whether an object is a DataFrame: that costs about 50 MB of resident memory for nothing. Both
treat pandas as optional and carry on when the import fails, so the agent makes it fail.
"""

from __future__ import annotations

import sys
from importlib.abc import MetaPathFinder
from typing import Any


class _NoPandas(MetaPathFinder):
    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError("pandas is kept out of the lightkeeper agent", name=name)
        return None


def install() -> bool:
    """Refuse later imports of pandas in this process. False if it is already imported."""
    if "pandas" in sys.modules:
        return False
    if not any(isinstance(f, _NoPandas) for f in sys.meta_path):
        sys.meta_path.insert(0, _NoPandas())
    return True
