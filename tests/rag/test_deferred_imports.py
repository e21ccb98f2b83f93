"""LightRAG's pinyin dictionaries load on first use, not at every LightRAG import."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
import lightkeeper.rag.runtime  # imports LightRAG (lightrag.utils imports pypinyin)
from lightrag.utils import get_pinyin_sort_key
loaded = [m for m in sys.modules if m.startswith("pypinyin.")]
assert not loaded, loaded
# what tools walking sys.modules read (Hypothesis' constants collection reads __file__)
stand_in = sys.modules["pypinyin"]
assert stand_in.__file__.endswith("__init__.py") and stand_in.__spec__.name == "pypinyin"
assert not [m for m in sys.modules if m.startswith("pypinyin.")]
print(",".join(sorted(["上海", "北京", "b", "广州", "A"], key=get_pinyin_sort_key)))
assert "pypinyin.pinyin_dict" in sys.modules
"""


def test_pinyin_sorting_loads_pypinyin_on_first_use() -> None:
    res = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    # pinyin order (bei jing, guang zhou, shang hai), as LightRAG sorts with pypinyin loaded
    assert res.stdout.strip() == "A,b,北京,广州,上海"
