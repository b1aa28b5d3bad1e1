"The README's flow diagram is the pipeline that dvc.yaml defines: every stage, and the notebook that runs it."
import re

import yaml

from conftest import ROOT


def test_flow_diagram_names_every_stage():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```mermaid\n(.*?)```", readme, flags=re.S)
    assert len(blocks) == 1, "the README has one flow diagram"
    nodes = dict(re.findall(r'(\w+)\["(\w+)<br/>', blocks[0]))  # id["label<br/>...": a node with its first line
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        assert nodes.get(name) == name, f"the README's flow diagram has no node for the {name} stage"
        nb = re.search(r"nbs/(\w+)\.ipynb", stage["cmd"]).group(1)
        assert re.search(rf'{name}\["{name}<br/>{nb}"\]', blocks[0]), f"the diagram's {name} node should name {nb}"
