"""The house rules that a linter can check: no module reaches into another's private names,
no module is long without saying why, and the architecture doc names only modules that exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "choir"
MAX_LINES = 360  # "about 350"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources() -> list[Path]:
    # Migrations are generated.
    return sorted(p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts)


def resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_imports(path: Path) -> list[str]:
    """`from other import _name`, and `other._name` on a module imported from choir."""
    importer = module_name(path)
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    module_aliases: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = resolve(importer, path.name == "__init__.py", node)
            if source == "__future__":
                continue
            for alias in node.names:
                if private(alias.name) and source != importer:
                    found.append(f"{importer}:{node.lineno} imports {alias.name} from {source}")
                if source.startswith("choir") and (PACKAGE.parent / (source.replace(".", "/") + "/" + alias.name)).exists():
                    module_aliases.add(alias.asname or alias.name)
                elif source.startswith("choir") and (PACKAGE.parent / (source.replace(".", "/") + "/" + alias.name + ".py")).exists():
                    module_aliases.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if any(private(part) for part in alias.name.split(".")):
                    found.append(f"{importer}:{node.lineno} imports {alias.name}")
                if alias.name.startswith("choir") and alias.asname:
                    module_aliases.add(alias.asname)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in module_aliases
            and private(node.attr)
        ):
            found.append(f"{importer}:{node.lineno} uses {node.value.id}.{node.attr}")
    return found


def test_no_module_uses_another_modules_private_names():
    found = [line for path in sources() for line in private_imports(path)]
    assert found == []


def test_the_private_name_check_catches_what_it_is_for(tmp_path, monkeypatch):
    # A checker that never fires proves nothing: feed it the old hub registry's misuse.
    fake = PACKAGE / "broadcast.py"
    code = "from choir.fanout.registry import _hubs\nfrom choir import presence\npresence._local_stores\n"
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: code)
    found = private_imports(fake)
    assert [line.split(" ", 1)[1] for line in found] == [
        "imports _hubs from choir.fanout.registry",
        "uses presence._local_stores",
    ]


def test_long_modules_say_why():
    # Over MAX_LINES a module's docstring must say why it is one module ("long because ...").
    long_without_reason = []
    for path in sources():
        text = path.read_text()
        if text.count("\n") > MAX_LINES:
            doc = ast.get_docstring(ast.parse(text)) or ""
            if not re.search(r"\blong(er)?\b", doc, re.IGNORECASE):
                long_without_reason.append(f"{module_name(path)} ({text.count(chr(10))} lines)")
    assert long_without_reason == []


def test_every_module_the_architecture_doc_names_exists():
    doc = (ROOT / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"\b((?:choir|choirsite|bench)/[\w/]+(?:\.py)?/?)", doc))
    assert named, "the architecture doc names no modules"
    missing = sorted(name for name in named if not (ROOT / name).exists())
    assert missing == []


def test_the_module_map_covers_every_module():
    doc = (ROOT / "docs" / "architecture.md").read_text()
    missing = []
    for path in sources():
        rel = path.relative_to(ROOT).as_posix()
        package = path.parent.relative_to(ROOT).as_posix() + "/"
        if rel not in doc and package not in doc:
            missing.append(rel)
    assert missing == []
