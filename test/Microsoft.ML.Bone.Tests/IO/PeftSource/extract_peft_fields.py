"""Reads Hugging Face PEFT's own source at each release and records what an adapter_config.json may contain.

For every version: the dataclass fields of PeftConfig (with its mixin) and of BoneConfig / MissConfig / LoraConfig,
and the `adapter_layer_names` of the matching layer classes (the tensor-name suffixes PEFT loads). The tests check the
files this project writes against that record, so PEFT's source, not this project's idea of it, is the reference.

Usage: python3 extract_peft_fields.py PEFT_GIT_DIR > peft_fields.json
(PEFT_GIT_DIR is a clone of https://github.com/huggingface/peft; nothing is imported or executed from it.)
"""
import ast
import json
import subprocess
import sys

VERSIONS = ["v0.14.0", "v0.15.2", "v0.16.0", "v0.17.0", "v0.17.1", "v0.18.1", "v0.19.0", "v0.19.1", "v0.20.0", "5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40"]
METHODS = {
    "BONE": ("src/peft/tuners/bone/config.py", "BoneConfig", "src/peft/tuners/bone/layer.py", "BoneLayer"),
    "MISS": ("src/peft/tuners/miss/config.py", "MissConfig", "src/peft/tuners/miss/layer.py", "MissLayer"),
    "LORA": ("src/peft/tuners/lora/config.py", "LoraConfig", "src/peft/tuners/lora/layer.py", "LoraLayer"),
}


def show(git_dir, rev, path):
    result = subprocess.run(["git", "--git-dir", git_dir, "show", f"{rev}:{path}"], capture_output=True, text=True)
    return result.stdout if result.returncode == 0 else None


def class_node(source, name):
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return node
    return None


def fields(node):
    # Dataclass fields: annotated class attributes, except ClassVar-style layer bookkeeping.
    return [stmt.target.id for stmt in node.body if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
            and not (isinstance(stmt.annotation, ast.Subscript) and getattr(stmt.annotation.value, "id", "") == "ClassVar")]


def class_tuple(node, attribute):
    for stmt in node.body:
        if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == attribute for t in stmt.targets):
            return list(ast.literal_eval(stmt.value))
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.target.id == attribute and stmt.value is not None:
            return list(ast.literal_eval(stmt.value))
    return None


def main(git_dir):
    record = {}
    for rev in VERSIONS:
        base_source = show(git_dir, rev, "src/peft/config.py")
        base = []
        for cls in ("PeftConfigMixin", "PeftConfig"):
            base += [f for f in fields(class_node(base_source, cls)) if f not in base]
        entry = {"PeftConfig": sorted(base)}
        for peft_type, (config_path, config_cls, layer_path, layer_cls) in METHODS.items():
            config_source = show(git_dir, rev, config_path)
            if config_source is None:
                continue
            layer_node = class_node(show(git_dir, rev, layer_path), layer_cls)
            entry[peft_type] = {
                "fields": sorted(fields(class_node(config_source, config_cls))),
                "adapter_layer_names": class_tuple(layer_node, "adapter_layer_names"),
            }
        record[rev] = entry
    json.dump(record, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
