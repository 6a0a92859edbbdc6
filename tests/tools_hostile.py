"""tools/hostile_inputs.py, importable by the tests (tools/ is not a package)."""

import importlib.util
import sys
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "hostile_inputs", Path(__file__).resolve().parents[1] / "tools" / "hostile_inputs.py"
)
_module = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("hostile_inputs", _module)
_spec.loader.exec_module(_module)
bomb_png = _module.bomb_png
CASES = _module.CASES
run_cases = _module.run_cases
