"""Every DVC stage lists the code it runs: the mlproj modules its notebook imports, directly or through other
mlproj modules. An edit to any of them must make `dvc status` say the stage changed."""
import ast, re
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]


def imported(tree: ast.AST, package_module: str | None = None) -> set[str]:
    "mlproj modules named by the imports in `tree` (relative ones resolved against the package)."
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1: mod = node.module or ""
            elif node.module and node.module.startswith("mlproj"): mod = node.module[len("mlproj"):].lstrip(".")
            else: continue
            if mod: out.add(mod.split(".")[0])
            else: out |= {a.name for a in node.names}  # from . import x
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("mlproj.")}
    return {m for m in out if (ROOT / "mlproj" / f"{m}.py").exists() and m != "_modidx"}


def closure(mods: set[str]) -> set[str]:
    todo, seen = list(mods), set()
    while todo:
        m = todo.pop()
        if m in seen: continue
        seen.add(m)
        todo += imported(ast.parse((ROOT / "mlproj" / f"{m}.py").read_text()))
    return seen


def notebook_imports(nb: Path) -> set[str]:
    mods = set()
    for cell in nbformat.read(nb, as_version=4).cells:
        if cell.cell_type != "code": continue
        src = "\n".join(l for l in cell.source.splitlines() if not l.lstrip().startswith(("%", "!")))
        try: mods |= imported(ast.parse(src))
        except SyntaxError: pass
        if m := re.search(r"^#\|\s*default_exp\s+(\S+)", cell.source, re.M): mods.add(m.group(1))
    return mods


def test_every_stage_lists_the_mlproj_modules_it_runs():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    missing = {}
    for name, st in stages.items():
        nbs = re.findall(r"nbs/\S+\.ipynb", st["cmd"]) if isinstance(st["cmd"], str) else []
        mods = set().union(*(notebook_imports(ROOT / n) for n in nbs)) if nbs else set()
        mods |= {m for m in re.findall(r"-m mlproj\.(\w+)", str(st["cmd"]))}
        need = {f"mlproj/{m}.py" for m in closure(mods)}
        lack = sorted(need - set(st.get("deps", [])))
        if lack: missing[name] = lack
    assert not missing, f"dvc.yaml stages that do not list the mlproj modules they import: {missing}"
