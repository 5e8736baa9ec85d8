"""Import one of the repository's ``scripts/*.py`` command lines as a module (they are files, not a package)."""

import importlib.util
import os
import sys
from types import ModuleType

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_script(name: str) -> ModuleType:
    """A fresh module object of ``scripts/<name>.py`` (tests may patch its attributes freely), registered as
    ``sys.modules[name]`` so that its functions pickle by reference (for process pools)."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "scripts", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
