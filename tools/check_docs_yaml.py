"""Parse every DOCUMENTATION/EXAMPLES/RETURN block and doc fragment as YAML (fast pre-check of sanity)."""

import ast
import pathlib
import sys

import yaml

failed = 0
for path in sorted(pathlib.Path("plugins").rglob("*.py")):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            fragment = path.parts[1] == "doc_fragments" and any(n.isupper() for n in names)
            if fragment or any(n in ("DOCUMENTATION", "EXAMPLES", "RETURN") for n in names):
                try:
                    yaml.safe_load(node.value.value)
                except yaml.YAMLError as exc:
                    failed += 1
                    print("%s %s: %s" % (path, names, exc))
sys.exit(1 if failed else 0)
