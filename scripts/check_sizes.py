"""STYLE rule 1: logic modules under 300 lines, functions under 60. Lists what is over; exit 1 if anything is."""

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA_TABLES = {"fer_cache/encoders/presets.py"}


def main() -> int:
    over = []
    for path in sorted(ROOT.glob("fer_*/**/*.py")):
        rel = path.relative_to(ROOT).as_posix()
        lines = path.read_text().count("\n")
        if lines > 300 and rel not in DATA_TABLES:
            over.append(f"{rel}: {lines} lines (limit 300)")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > 60:
                    over.append(f"{rel}:{node.lineno} {node.name}: {length} lines (limit 60)")
    print("\n".join(over) or "module and function sizes within limits")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
