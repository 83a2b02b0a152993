"""Copies an executed notebook (from build/notebooks.sh) over the committed one, so the committed outputs come from a
real run. The package cell's live progress frames ("Installing packages ...") are reduced to the last one."""
import json
import sys

executed_path, committed_path = sys.argv[1], sys.argv[2]
with open(executed_path, encoding="utf-8") as f:
    notebook = json.load(f)
for cell in notebook["cells"]:
    if cell["cell_type"] != "code":
        continue
    if "".join(cell["source"]).lstrip().startswith("#r"):
        frames = [o for o in cell["outputs"] if o["output_type"] == "display_data" and "text/html" in o.get("data", {})]
        others = [o for o in cell["outputs"] if o not in frames]
        cell["outputs"] = frames[-1:] + others
tmp = committed_path + ".tmp"
with open(tmp, "w", encoding="utf-8") as f:
    json.dump(notebook, f, indent=1, ensure_ascii=False)
    f.write("\n")
import os
os.replace(tmp, committed_path)
