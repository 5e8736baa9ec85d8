"""Safe loading: every checkpoint read in the package uses ``weights_only=True`` (source scan plus behaviour: a file
whose pickle would run code is refused by every loader the bundles use, and the code never runs), and no Hugging Face
loading trusts remote code by default."""

from __future__ import annotations

import ast
import glob
import inspect
import os
import re

import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = sorted(
    glob.glob(os.path.join(REPO, "monai_ext", "**", "*.py"), recursive=True)
    + glob.glob(os.path.join(REPO, "scripts", "*.py"))
)
CONFIGS = sorted(glob.glob(os.path.join(REPO, "bundles", "*", "configs", "*.json")))


def _calls(path):
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), filename=path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, tree


def _name(func) -> str:
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
    return ".".join(reversed(parts))


def _keyword(call, name):
    for keyword in call.keywords:
        if keyword.arg == name:
            return keyword.value
    return None


def test_sources_found():
    assert len(SOURCES) > 20 and any(p.endswith("io.py") for p in SOURCES)


def test_every_torch_load_is_weights_only():
    offenders = []
    for path in SOURCES:
        for call, _ in _calls(path):
            name = _name(call.func)
            where = f"{os.path.relpath(path, REPO)}:{call.lineno}"
            if name == "torch.load":
                value = _keyword(call, "weights_only")
                if not (isinstance(value, ast.Constant) and value.value is True):
                    offenders.append(f"{where} torch.load without weights_only=True")
            # torch.jit.load is not listed: TorchScript archives hold TorchScript, not pickled Python objects (the
            # package loads TorchScript it has just exported, to check it, and OpenAI's CLIP archives, keeping only
            # their tensors and never calling their code).
            if name in ("pickle.load", "pickle.loads", "dill.load", "joblib.load"):
                offenders.append(f"{where} {name}")
            if name in ("np.load", "numpy.load"):
                value = _keyword(call, "allow_pickle")
                if isinstance(value, ast.Constant) and value.value is True:
                    offenders.append(f"{where} np.load(allow_pickle=True)")
    for path in CONFIGS:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for match in re.finditer(r"torch\.load\(([^)]*)\)", text):
            if "weights_only=True" not in match.group(1):
                offenders.append(f"{os.path.relpath(path, REPO)}: {match.group(0)}")
    assert not offenders, "\n".join(offenders)


def test_no_trust_remote_code_by_default():
    offenders = []
    for path in SOURCES + CONFIGS:
        where = os.path.relpath(path, REPO)
        if path.endswith(".json"):
            with open(path, encoding="utf-8") as f:
                if re.search(r"trust_remote_code\W+(True|true)", f.read()):
                    offenders.append(f"{where}: trust_remote_code set to true")
            continue
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), filename=path)
        for call, _ in _calls(path):
            value = _keyword(call, "trust_remote_code")
            if isinstance(value, ast.Constant) and value.value is True:
                offenders.append(f"{where}:{call.lineno} trust_remote_code=True")
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args.args + node.args.kwonlyargs
                defaults = [None] * (len(node.args.args) - len(node.args.defaults)) + list(node.args.defaults)
                defaults += list(node.args.kw_defaults)
                for arg, default in zip(args, defaults):
                    if (
                        arg.arg == "trust_remote_code"
                        and default is not None
                        and not (isinstance(default, ast.Constant) and default.value is False)
                    ):  # a required argument is fine: callers pass it explicitly
                        offenders.append(
                            f"{where}:{node.lineno} {node.name}(trust_remote_code) is not False by default"
                        )
    assert not offenders, "\n".join(offenders)
    from monai_ext.apps import knowledge_generation
    from monai_ext.text import tokenize

    assert inspect.signature(tokenize.HFTokenize).parameters["trust_remote_code"].default is False
    assert inspect.signature(knowledge_generation.load_local_generator).parameters["trust_remote_code"].default is False


class _RunsCode:
    """Unpickling this object calls ``open(marker, "w")``: it would create the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def evil_checkpoint(tmp_path):
    marker = str(tmp_path / "code_ran")
    path = str(tmp_path / "model.pt")
    torch.save({"model": torch.nn.Linear(2, 1).state_dict(), "payload": _RunsCode(marker)}, path)
    return path, marker


def _loaders(path, tmp_path):
    from ignite.engine import Engine
    from monai.handlers import CheckpointLoader
    from monai_ext.checkpoint import load_state_dict_checked, safe_torch_load
    from monai_ext.clip import load_clip_state_dict
    from monai_ext.handlers import CheckedCheckpointLoader, TrainerCheckpoint

    net = torch.nn.Linear(2, 1)

    def trainer_resume():
        os.makedirs(tmp_path / "trainer", exist_ok=True)
        os.replace(path, tmp_path / "trainer" / "trainer.pt")
        try:
            engine = Engine(lambda e, b: None)
            TrainerCheckpoint(str(tmp_path / "trainer"), {"model": net}, resume=True).attach(engine)
            engine.run([0], max_epochs=1)
        finally:
            os.replace(tmp_path / "trainer" / "trainer.pt", path)

    def monai_checkpoint_loader():  # what evaluate.json / inference_ct.json use
        CheckpointLoader(load_path=path, load_dict={"model": net})(Engine(lambda e, b: None))

    return {
        "safe_torch_load": lambda: safe_torch_load(path),
        "load_state_dict_checked": lambda: load_state_dict_checked(net, path),
        "CheckedCheckpointLoader": lambda: CheckedCheckpointLoader(path, network=net)(),
        "TrainerCheckpoint(resume)": trainer_resume,
        "load_clip_state_dict": lambda: load_clip_state_dict(path),
        "monai CheckpointLoader": monai_checkpoint_loader,
    }


@pytest.mark.parametrize(
    "loader",
    [
        "safe_torch_load",
        "load_state_dict_checked",
        "CheckedCheckpointLoader",
        "TrainerCheckpoint(resume)",
        "load_clip_state_dict",
        "monai CheckpointLoader",
    ],
)
def test_pickle_that_runs_code_is_refused(evil_checkpoint, tmp_path, loader):
    from monai_ext.checkpoint import CheckpointError

    path, marker = evil_checkpoint
    with pytest.raises(Exception) as info:
        _loaders(path, tmp_path)[loader]()
    assert not os.path.exists(marker), "unpickling ran code"
    if loader != "monai CheckpointLoader":  # MONAI's own handler: refused, but with torch's message
        assert isinstance(info.value, (CheckpointError, ValueError, RuntimeError))
        assert "model.pt" in str(info.value) or "trainer.pt" in str(info.value)
    assert "weights_only" in str(info.value) or "WeightsUnpickler" in str(info.value) or "pickle" in str(info.value)
