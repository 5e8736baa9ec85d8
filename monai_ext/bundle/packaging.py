"""Self-contained Model Zoo archives of a bundle: configs, docs, licence and the code the configs import.

A bundle's configs reference ``monai_ext`` (``"_target_": "monai_ext.networks.nets.TGCNet"``). A Model Zoo user has
MONAI and the packages in ``required_packages_version`` but not this repository, so :func:`package_bundle` copies the
code the archive needs into it as ``<bundle>/scripts/monai_ext/`` and generates ``<bundle>/scripts/__init__.py``,
which puts ``<bundle>/scripts`` on ``sys.path``. Every config with an ``imports`` list gets ``"$import scripts"`` as
its first import, so ``import monai_ext`` (and every ``monai_ext.`` target) resolves to the bundled copy.

What is vendored (:func:`vendored_files`): the modules that the archive's configs name (``_target_`` values, the names
in ``$`` expressions and ``$import`` lines), the modules those import (the closure, read with ``ast``; an
``__init__.py`` that imports its siblings brings them along), every package ``__init__.py`` on the way, and the data
files those modules name (``clip_configs/*.json`` next to ``clip.py``), nothing else: no tooling, no applications.
The demo configs (``configs/demo*``, which make synthetic data with ``monai_ext.demo``) go in by default;
``include_demo=False`` leaves them out, and with them the demo generators. The demo overlays that load the aligned
tiny CLIP shipped inside ``monai_ext`` (:data:`PACKAGE_WEIGHT_CONFIGS`) are always left out, as that file is not
vendored.

How MONAI finds bundle-local code: ``"$import scripts"`` is the Model Zoo convention; MONAI evaluates a config's
import statements (in order, before anything else is parsed) with ``optional_import``, and ``scripts`` is found
because ``python -m monai.bundle run`` puts the current folder on ``sys.path`` - run it from the bundle folder, as the
Model Zoo documents. (``ConfigWorkflow.run`` also inserts the bundle root into ``sys.path``, but only after
``initialize`` has parsed the configs, too late for imports.) Run from elsewhere, the import fails silently; every
config's ``initialize`` therefore starts with :func:`monai_ext.bundled_code.check_bundled_code` (imported by
``"$import monai_ext.bundled_code"``, the second import), which logs which copy is in use.

Run from elsewhere with no ``monai_ext`` importable at all, the check could not even be reached (``monai_ext`` is then
MONAI's placeholder for a failed import), so the check is preceded by a guard that needs only the standard library: a
component calling ``sys.exit`` with a one-line message (run from the bundle folder, or put it on ``PYTHONPATH``),
``_disabled_`` when the packages were imported (:func:`bundled_code_guard`).

The archive is deterministic (sorted entries, fixed timestamps) and holds ``<bundle>/sha256sums.txt``: the SHA-256 of
every other file, in ``sha256sum`` format (``cd <bundle> && sha256sum -c sha256sums.txt``). Files listed in
``large_files.yml``/``.json`` (the weights, downloaded separately), weight files (``.pt``, ``.ts``, ``.onnx``...) and
run outputs (``runs/``, ``eval/``, ``predictions/``, ``demo_data/``...) are left out.

Weights: with ``weights=`` and ``weights_url=`` the trained checkpoint goes in as ``models/model.pt`` (checked first:
:func:`check_weights`, :func:`check_weights_url`) and the archive's ``large_files.yml`` lists it with that ``url``,
its SHA-256 as ``hash_val`` and ``hash_type: sha256``, what ``monai.bundle.download_large_files`` and the Model Zoo's
CI (``ci/utils.py``) pass to ``monai.apps.utils.download_url``, which checks an existing file against the hash and
downloads a missing one. Without weights the archive's ``large_files.yml`` is ``large_files: []``: both tools read it
as nothing to download, where an entry with ``url: ""`` makes them call ``urlretrieve("")`` and fail. (The Zoo's CI
also wants ``models/model.pt`` itself, so only an archive with weights passes it.)

Requirements (:func:`bundle_requirements`): the third-party modules the vendored code imports, the modules the
archive's configs import or name, and what MONAI needs for running them but does not install itself (``fire`` for
``python -m monai.bundle``, PyYAML for ``large_files.yml``, the packages of :data:`COMPONENT_REQUIREMENTS`).
"""

from __future__ import annotations

import ast
import fnmatch
import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import sys
import urllib.parse
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from monai.bundle.reference_resolver import ReferenceResolver
from monai_ext.bundle.parser import bundle_parser
from monai_ext.checkpoint import CheckpointError, extract_state_dict, load_state_dict_checked, safe_torch_load
from monai_ext.io import atomic_write, sha256_file

__all__ = [
    "MANIFEST_NAME",
    "DEMO_CONFIGS",
    "PACKAGE_WEIGHT_CONFIGS",
    "COMPONENT_REQUIREMENTS",
    "WEIGHTS_PATH",
    "archive_large_files",
    "bundle_requirements",
    "bundled_code_guard",
    "check_weights",
    "check_weights_url",
    "config_modules",
    "config_references",
    "package_bundle",
    "verify_bundle_archive",
    "vendored_files",
    "vendored_requirements",
    "large_file_paths",
]


MANIFEST_NAME = "sha256sums.txt"
SCRIPTS_IMPORT = "$import scripts"
BUNDLED_CODE_IMPORT = "$import monai_ext.bundled_code"
# Configs (relative to the bundle) that make synthetic data with monai_ext.demo; ``include_demo=False`` leaves them out.
DEMO_CONFIGS = ("configs/demo*",)
# Demo configs that load weights shipped inside monai_ext (the aligned tiny CLIP), which archives do not vendor: always
# left out, so that no archived config names a file the archive lacks.
PACKAGE_WEIGHT_CONFIGS = ("configs/demo_kinds*",)
CONFIG_SUFFIXES = (".json", ".yaml", ".yml")
BASE_REQUIREMENTS = ("monai", "torch", "numpy")
WEIGHT_PATTERNS = ("*.pt", "*.pth", "*.ts", "*.onnx", "*.ckpt", "*.safetensors", "*.bin")
RUN_OUTPUT_DIRS = ("runs", "eval", "predictions", "demo_data", "mlruns", "outputs", "exported")
ALWAYS_SKIPPED = ("__pycache__", "*.pyc", "*.pyo", ".*", "*.tmp")
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
LARGE_FILES_NAMES = ("large_files.yml", "large_files.yaml", "large_files.json")
# Where the Model Zoo's CI looks for the weights (ci/verify_bundle.py: preferred_files_list) and the configs load them.
WEIGHTS_PATH = "models/model.pt"
# monai.apps.utils.SUPPORTED_HASH_TYPES (and the Zoo's ci/utils.py) spell it so: md5, sha1, sha256, sha512.
WEIGHTS_HASH_TYPE = "sha256"
# Schemes download_url can fetch with urllib (file: a local mirror, and what the tests use).
WEIGHTS_URL_SCHEMES = ("https", "http", "file")
# What MONAI needs for running a bundle but does not install itself (its own requirements are numpy and torch only):
# module -> where it is needed.
MONAI_RUN_REQUIREMENTS = {
    "fire": "python -m monai.bundle (monai/bundle/__main__.py imports fire)",
    "yaml": "large_files.yml (monai.bundle.download_large_files reads it with PyYAML)",
}
# MONAI and ignite components that import an optional package when they are built: _target_ -> modules.
COMPONENT_REQUIREMENTS = {
    "TensorBoardStatsHandler": ("tensorboard",),
    "TensorBoardImageHandler": ("tensorboard",),
    "MLFlowHandler": ("mlflow",),
    "ignite.handlers.ProgressBar": ("tqdm",),
    "ignite.contrib.handlers.ProgressBar": ("tqdm",),
}
BUNDLE_LOCAL_PACKAGE = "scripts"
GUARD_IMPORTS = ("$import functools", "$import os", "$import sys")

SCRIPTS_INIT = '''"""Bundle-local code, generated by monai_ext.bundle.packaging (do not edit: re-package instead).

``"$import scripts"`` (the first import of the bundle's configs) runs this file, which puts this folder on sys.path so
that the bundled copy of {packages} is the one the configs import. Run bundles from the bundle folder:
``python -m monai.bundle run --config_file configs/inference.json``.
"""

import os
import sys
import warnings

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
for _name in {package_names}:
    _module = sys.modules.get(_name)
    _file = os.path.abspath(getattr(_module, "__file__", None) or "") if _module is not None else ""
    if _module is not None and not _file.startswith(_HERE + os.sep):
        warnings.warn(
            f"'{{_name}}' was imported from {{_file}} before the bundle's copy in {{_HERE}}; the bundle runs with it."
        )
'''


def _skipped(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in patterns)


def _read_large_files(bundle_dir: str) -> list[dict]:
    """The entries (``path``, ``url``, ``hash_val``, ``hash_type``) of ``large_files.yml``/``.yaml``/``.json``."""
    entries: list[dict] = []
    for name in LARGE_FILES_NAMES:
        path = os.path.join(bundle_dir, name)
        if not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8") as f:
            if name.endswith(".json"):
                content = json.load(f)
            else:
                import yaml

                content = yaml.safe_load(f)
        entries += [e for e in (content or {}).get("large_files", []) or [] if isinstance(e, dict) and e.get("path")]
    return entries


def large_file_paths(bundle_dir: str) -> list[str]:
    """Paths (relative to the bundle) listed in ``large_files.yml``/``.yaml``/``.json``."""
    return [os.path.normpath(str(entry["path"])) for entry in _read_large_files(bundle_dir)]


def _bundle_files(bundle_dir: str, extra_excludes: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """(included, skipped) paths relative to ``bundle_dir``."""
    large = set(large_file_paths(bundle_dir))
    included, skipped = [], []
    for root, dirs, files in os.walk(bundle_dir):
        rel_root = os.path.relpath(root, bundle_dir)
        keep_dirs = []
        for d in sorted(dirs):
            rel = os.path.normpath(os.path.join(rel_root, d))
            if _skipped(d, ALWAYS_SKIPPED) or (rel_root == "." and d in RUN_OUTPUT_DIRS) or d == "__pycache__":
                skipped.append(rel + "/")
            else:
                keep_dirs.append(d)
        dirs[:] = keep_dirs
        for name in sorted(files):
            rel = os.path.normpath(os.path.join(rel_root, name))
            if (
                rel in large
                or _skipped(name, ALWAYS_SKIPPED)
                or _skipped(name, WEIGHT_PATTERNS)
                or _skipped(rel, extra_excludes)
                or rel == MANIFEST_NAME
            ):
                skipped.append(rel)
            else:
                included.append(rel)
    return included, skipped


def _package_files(package: str) -> tuple[str, list[str]]:
    """(package folder, files relative to it) of an importable package, without caches."""
    module = importlib.import_module(package)
    if not getattr(module, "__file__", None) or not module.__file__.endswith("__init__.py"):
        raise ValueError(f"'{package}' is not a regular package with an __init__.py; cannot bundle it.")
    root = os.path.dirname(os.path.abspath(module.__file__))
    files = []
    for current, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not _skipped(d, ALWAYS_SKIPPED))
        for name in sorted(names):
            if not _skipped(name, ALWAYS_SKIPPED):
                files.append(os.path.relpath(os.path.join(current, name), root))
    return root, files


def bundled_code_guard(packages: Sequence[str] = ("monai_ext",)) -> dict:
    """The component that starts an archive config's ``initialize``: it stops the run with one line when
    ``packages`` could not be imported at all (the bundle was started outside its folder, so ``"$import scripts"``
    failed and MONAI skipped it), and is ``_disabled_`` otherwise.

    It needs only the standard library (``functools``, ``os``, ``sys``, imported by the archive's configs), not the
    bundled code it checks for: ``sys.exit`` raises ``SystemExit``, which MONAI does not wrap, so the message is the
    last thing printed and the exit status is 1. (Where another copy of a package was imported instead,
    :func:`monai_ext.bundled_code.check_bundled_code`, the next item, warns.)
    """
    names = ", ".join(f"'{p}'" for p in packages)
    # No "import" in the text: MONAI parses every expression containing that word as Python before the @references
    # are replaced (ConfigExpression.is_import_statement), and "@bundle_root" is a syntax error there.
    message = (
        f"{names} not found: this bundle carries its own copy in <bundle>/scripts, which Python finds only when the "
        "bundle runs from its folder. Run it there (cd to the folder with configs/ and scripts/) or put that folder "
        "first on PYTHONPATH (bundle_root is "
    )
    return {
        "_target_": f"$functools.partial(sys.exit, {message!r} + os.path.abspath(@bundle_root) + ').')",
        "_disabled_": f"$set(sys.modules).issuperset({list(packages)!r})",
    }


def _rewrite_config(data: bytes, name: str, packages: Sequence[str] = ()) -> bytes:
    """Prepend ``"$import scripts"`` to a JSON config's ``imports`` and, when ``monai_ext`` is bundled,
    ``"$import monai_ext.bundled_code"`` and the standard modules of the guard to them, and the
    :func:`bundled_code_guard` and a :func:`check_bundled_code` call to its ``initialize`` (other files unchanged)."""
    if not name.endswith(".json"):
        return data
    try:
        config = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"Config '{name}' is not valid JSON: {error}") from error
    if not isinstance(config, dict):
        return data
    changed = False
    imports = config.get("imports")
    bundled = "monai_ext" in packages
    leading = [SCRIPTS_IMPORT] + ([BUNDLED_CODE_IMPORT, *GUARD_IMPORTS] if bundled else [])
    if isinstance(imports, list) and imports[: len(leading)] != leading:
        config["imports"] = leading + [i for i in imports if i not in leading]
        changed = True
    initialize = config.get("initialize")
    checks = [
        bundled_code_guard(packages),
        f"$monai_ext.bundled_code.check_bundled_code(@bundle_root, {list(packages)!r})",
    ]
    if bundled and isinstance(initialize, list) and initialize[: len(checks)] != checks:
        config["initialize"] = checks + [i for i in initialize if i not in checks]
        changed = True
    if not changed:
        return data
    return (json.dumps(config, indent=4, ensure_ascii=False) + "\n").encode("utf-8")


def _load_config(data: bytes, name: str) -> Any:
    if name.endswith(".json"):
        return json.loads(data.decode("utf-8"))
    import yaml

    return yaml.safe_load(data.decode("utf-8"))


def _dotted_name(node: ast.AST) -> str | None:
    """``a.b.c`` for a name or an attribute chain on a name, else ``None``."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        parent = _dotted_name(node.value)
        return None if parent is None else f"{parent}.{node.attr}"
    return None


def _expression_references(expression: str, packages: Sequence[str] | None) -> set[str]:
    """Dotted names rooted in ``packages`` (``None``: any) that a config expression (without its ``$``) uses or
    imports."""
    # MONAI swaps each "@id" for a lookup before evaluating; a plain name keeps the text parseable.
    source = ReferenceResolver.id_matcher.sub("_ref", ReferenceResolver.normalize_id(expression))
    try:
        tree = ast.parse(source.strip(), mode="exec")
    except SyntaxError as error:
        raise ValueError(f"Config expression '${expression}' is not Python: {error}") from error
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        dotted = _dotted_name(node)
        if dotted is not None:
            names.add(dotted)
            return
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.update(f"{node.module}.{alias.name}" if alias.name != "*" else node.module for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {name for name in names if packages is None or name.split(".")[0] in packages}


def config_references(config: Any, packages: Sequence[str] | None = ("monai_ext",)) -> set[str]:
    """Dotted names rooted in ``packages`` (``None``: names in ``$`` expressions rooted anywhere, no ``_target_``)
    that a parsed config names: ``_target_`` values and the names used or imported in ``$`` expressions
    (``"$import monai_ext.data"``, ``"$monai_ext.distributed.local_device()"``).

    Other text (descriptions that mention ``monai_ext``) is not code and is ignored.

    Example::

        >>> config = {"imports": ["$import monai_ext"], "net": {"_target_": "monai_ext.networks.nets.TGCNet"}}
        >>> sorted(config_references(config))
        ['monai_ext', 'monai_ext.networks.nets.TGCNet']
    """
    names: set[str] = set()
    if isinstance(config, dict):
        target = config.get("_target_")
        if isinstance(target, str) and not target.startswith("$") and target.split(".")[0] in (packages or ()):
            names.add(target)
        for value in config.values():
            names |= config_references(value, packages)
    elif isinstance(config, list):
        for value in config:
            names |= config_references(value, packages)
    elif isinstance(config, str) and config.startswith("$"):
        names |= _expression_references(config[1:], packages)
    return names


def _config_targets(config: Any) -> set[str]:
    """The ``_target_`` names of a parsed config (not those given as ``$`` expressions)."""
    if isinstance(config, dict):
        target = config.get("_target_")
        found = {target} if isinstance(target, str) and not target.startswith("$") else set()
        return found.union(*(_config_targets(v) for v in config.values()))
    if isinstance(config, list):
        return set().union(*(_config_targets(v) for v in config))
    return set()


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def config_modules(config: Any) -> set[str]:
    """Top-level modules that a parsed config needs: those its ``$import``/``$from`` lines and dotted ``_target_``
    values name, the first part of the dotted names in its ``$`` expressions when that is a module (``torch.optim.AdamW``
    -> ``torch``; local names such as ``x.shape`` are not), and those the components it builds import
    (:data:`COMPONENT_REQUIREMENTS`: ``TensorBoardStatsHandler`` -> ``tensorboard``).

    Example::

        >>> sorted(config_modules({"imports": ["$import ignite"], "h": {"_target_": "TensorBoardStatsHandler"}}))
        ['ignite', 'tensorboard']
    """
    targets = _config_targets(config)
    names = {t for t in targets if "." in t} | config_references(config, packages=None)
    roots = {name.split(".")[0] for name in names}
    modules = {root for root in roots if _is_module(root)}
    for target in targets:
        modules.update(COMPONENT_REQUIREMENTS.get(target, ()))
    return modules


class _PackageSource:
    """The modules and data files of importable packages, read from their folders (nothing of them is imported)."""

    def __init__(self, packages: Sequence[str]):
        self.packages = tuple(packages)
        self.files: dict[str, str] = {}  # archive path below scripts/ ("monai_ext/clip.py") -> source file
        self.modules: dict[str, str] = {}  # module name -> archive path
        self.package_dirs: set[str] = set()  # archive folders with an __init__.py ("monai_ext/text")
        self.data: list[str] = []  # archive paths of files that are no module
        for package in packages:
            root, files = _package_files(package)
            dirs = {os.path.dirname(rel) for rel in files if os.path.basename(rel) == "__init__.py"}
            self.package_dirs |= {f"{package}/{d.replace(os.sep, '/')}".rstrip("/") for d in dirs}
            for rel in files:
                path = f"{package}/{rel.replace(os.sep, '/')}"
                self.files[path] = os.path.join(root, rel)
                if rel.endswith(".py") and os.path.dirname(rel) in dirs:
                    module = path[: -len(".py")].removesuffix("/__init__").replace("/", ".")
                    self.modules[module] = path
                else:
                    self.data.append(path)
        # Weights shipped with a package (the demo's aligned tiny CLIP) are not vendored, nor their records
        # (<stem>.json, <name>.sha256): an archive's weights travel through large_files.yml, as the Model Zoo wants.
        weight_stems = {os.path.splitext(p)[0] for p in self.data if _skipped(os.path.basename(p), WEIGHT_PATTERNS)}
        self.data = [p for p in self.data if not any(p.startswith(stem + ".") for stem in weight_stems)]
        self._trees: dict[str, ast.Module] = {}

    def tree(self, module: str) -> ast.Module:
        if module not in self._trees:
            with open(self.files[self.modules[module]], encoding="utf-8") as f:
                self._trees[module] = ast.parse(f.read(), filename=self.files[self.modules[module]])
        return self._trees[module]

    def module_of(self, name: str) -> str:
        """The module that defines ``name``: its longest prefix that is a module (``monai_ext.data.Foo`` ->
        ``monai_ext.data``)."""
        parts = name.split(".")
        for end in range(len(parts), 1, -1):
            if ".".join(parts[:end]) in self.modules:
                return ".".join(parts[:end])
        return parts[0]  # the package itself

    def package_of(self, module: str) -> str:
        """The package a module lives in (a package's own ``__init__`` lives in the package itself)."""
        is_package = self.modules[module].endswith("/__init__.py")
        return module if is_package else module.rpartition(".")[0]

    def imported_modules(self, module: str) -> set[str]:
        """Modules of the bundled packages that ``module`` imports (absolute or relative imports)."""
        found = set()
        for node in ast.walk(self.tree(module)):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
                submodules: list[str] = []
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    package = self.package_of(module).split(".")
                    package = package[: len(package) - node.level + 1]
                    base = ".".join(package + ([base] if base else []))
                targets = [base]
                submodules = [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            found.update(self.module_of(t) for t in targets if t.split(".")[0] in self.packages)
            found.update(s for s in submodules if s in self.modules)
        return found

    def closure(self, names: Iterable[str]) -> set[str]:
        """The modules that importing ``names`` runs: theirs, what they import, and every package on the way."""
        pending = [self.module_of(name) for name in names]
        done: set[str] = set()
        while pending:
            module = pending.pop()
            if module in done:
                continue
            done.add(module)
            parts = module.split(".")
            pending += [".".join(parts[:end]) for end in range(1, len(parts))]
            pending += self.imported_modules(module)
        return done

    def named_data(self, modules: Iterable[str]) -> list[str]:
        """Data files that ``modules`` name: a file (or the folder holding it) next to a module whose source has a
        string starting with its name (``"clip_configs"`` in ``clip.py`` for ``clip_configs/tiny.json``)."""
        named: dict[str, set[str]] = {}  # package folder -> first path components its modules' strings name
        for module in modules:
            folder = self.package_of(module).replace(".", "/")
            strings = named.setdefault(folder, set())
            for node in ast.walk(self.tree(module)):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    strings.add(re.split(r"[/\\]", node.value, maxsplit=1)[0])
        found = []
        for path in self.data:
            folder = path.rpartition("/")[0]
            while folder not in self.package_dirs:  # the package folder that holds the data
                folder = folder.rpartition("/")[0]
            if path[len(folder) + 1 :].split("/")[0] in named.get(folder, ()):
                found.append(path)
        return found


def _vendored(configs: Mapping[str, bytes], packages: Sequence[str]) -> dict[str, str]:
    """Archive path below ``scripts/`` -> source file, for the code and data that ``configs`` (bundle path -> the
    content that goes into the archive) need."""
    references: set[str] = set()
    for rel, data in configs.items():
        try:
            references |= config_references(_load_config(data, rel), packages)
        except ValueError as error:
            raise ValueError(f"Config '{rel}': {error}") from error
    source = _PackageSource(packages)
    modules = source.closure(references)
    paths = sorted([source.modules[m] for m in modules] + source.named_data(modules))
    return {path: source.files[path] for path in paths}


def _bundle_entries(
    bundle_dir: str, exclude: Sequence[str], packages: Sequence[str]
) -> tuple[dict[str, bytes], list[str]]:
    """(bundle path with ``/`` -> content as it goes into the archive, skipped bundle paths)."""
    included, skipped = _bundle_files(bundle_dir, exclude)
    entries = {}
    for rel in included:
        with open(os.path.join(bundle_dir, rel), "rb") as f:
            data = f.read()
        if rel.startswith("configs" + os.sep):
            data = _rewrite_config(data, rel, packages)
        entries[rel.replace(os.sep, "/")] = data
    return entries, skipped


def _archive_configs(entries: Mapping[str, bytes]) -> dict[str, bytes]:
    return {rel: data for rel, data in entries.items() if rel.startswith("configs/") and rel.endswith(CONFIG_SUFFIXES)}


def _excludes(exclude: Sequence[str], include_demo: bool) -> list[str]:
    return [*exclude, *PACKAGE_WEIGHT_CONFIGS, *(() if include_demo else DEMO_CONFIGS)]


def vendored_files(
    bundle_dir: str, packages: Sequence[str] = ("monai_ext",), include_demo: bool = True, exclude: Sequence[str] = ()
) -> dict[str, str]:
    """The code :func:`package_bundle` puts into ``<bundle>/scripts/``: archive path below ``scripts/``
    (``"monai_ext/networks/nets/tgcnet.py"``) -> source file.

    These are the modules of ``packages`` named by the configs that go into the archive (see
    :func:`config_references`; the configs as packaged, with the :func:`check_bundled_code` call), every module
    those import, the packages on the way and the data files those modules name.

    Args:
        bundle_dir: bundle folder.
        packages: importable packages whose code the configs reference.
        include_demo: whether the demo configs (:data:`DEMO_CONFIGS`) go into the archive.
        exclude: more glob patterns (relative to the bundle) left out of the archive.
    """
    entries, _ = _bundle_entries(os.path.abspath(bundle_dir), _excludes(exclude, include_demo), packages)
    return _vendored(_archive_configs(entries), packages)


def _module_level_imports(source: str, filename: str) -> tuple[set[str], set[str]]:
    """Top-level module names imported at module level (needed to import the file) and elsewhere (optional)."""
    tree = ast.parse(source, filename=filename)
    required, optional = set(), set()

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            child_lazy = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Try, ast.If))
            if isinstance(child, ast.Import):
                names = {alias.name.split(".")[0] for alias in child.names}
                (optional if lazy else required).update(names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                (optional if lazy else required).add(child.module.split(".")[0])
            visit(child, child_lazy)

    visit(tree, False)
    return required, optional


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _coverage(required_packages: Iterable[str], skip: Iterable[str]):
    """A predicate: whether a top-level module is the standard library, one of ``skip``, MONAI's base set or provided
    by one of ``required_packages`` (distribution names, matched through the installed distributions' modules)."""
    distributions = importlib.metadata.packages_distributions()
    allowed = {_normalise(p) for p in (*BASE_REQUIREMENTS, *required_packages)}
    skipped = set(sys.stdlib_module_names) | {"__future__"} | set(skip)

    def covered(module: str) -> bool:
        if module in skipped:
            return True
        names = {_normalise(module), *(_normalise(d) for d in distributions.get(module, []))}
        return any(n in allowed or any(n.startswith(a + "-") for a in allowed) for n in names)

    return covered


def _code_imports(files: Iterable[str]) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(module-level, other) imports of the ``.py`` files: top-level module -> the files importing it."""
    required: dict[str, set[str]] = {}
    optional: dict[str, set[str]] = {}
    for path in files:
        if path.endswith(".py"):
            with open(path, encoding="utf-8") as f:
                req, opt = _module_level_imports(f.read(), path)
            for module in req:
                required.setdefault(module, set()).add(path)
            for module in opt:
                optional.setdefault(module, set()).add(path)
    return required, optional


def vendored_requirements(
    files: Iterable[str], required_packages: Iterable[str] = (), packages: Sequence[str] = ("monai_ext",)
) -> dict[str, list[str]]:
    """Third-party modules the vendored code imports, checked against MONAI's base set and ``required_packages``.

    Args:
        files: the vendored source files (``vendored_files(bundle_dir).values()``); only ``.py`` files are read.
        required_packages: the distributions a user installs (metadata's ``required_packages_version``).
        packages: the vendored packages themselves (their imports are covered).

    Returns:
        ``{"missing": [...], "optional": [...]}``: module-level imports not covered (the bundle would fail to import
        them in a fresh environment) and imports inside functions/try blocks (needed only by some features).
    """
    covered = _coverage(required_packages, packages)
    required, optional = _code_imports(files)
    return {
        "missing": sorted(m for m in required if not covered(m)),
        "optional": sorted(m for m in set(optional) - set(required) if not covered(m)),
    }


def _requirements(
    configs: Mapping[str, bytes], vendored: Mapping[str, str], metadata: Mapping[str, Any], packages: Sequence[str]
) -> dict[str, Any]:
    required, optional = _code_imports(vendored.values())
    sources = {m: {f"scripts/{p}" for p, f in vendored.items() if f in files} for m, files in required.items()}
    lazy = {m: {f"scripts/{p}" for p, f in vendored.items() if f in files} for m, files in optional.items()}
    for rel, data in configs.items():
        for module in config_modules(_load_config(data, rel)):
            sources.setdefault(module, set()).add(rel)
    for module, where in MONAI_RUN_REQUIREMENTS.items():
        sources.setdefault(module, set()).add(where)
    covered = _coverage(metadata.get("required_packages_version", {}) or {}, (*packages, BUNDLE_LOCAL_PACKAGE))
    missing = sorted(m for m in sources if not covered(m))
    undeclared = sorted(m for m in set(lazy) - set(sources) if not covered(m))
    where = {m: sorted(sources.get(m, set()) | lazy.get(m, set())) for m in (*missing, *undeclared)}
    return {"missing": missing, "optional": undeclared, "where": where}


def bundle_requirements(
    bundle_dir: str,
    packages: Sequence[str] = ("monai_ext",),
    include_demo: bool = True,
    exclude: Sequence[str] = (),
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The third-party modules an archive of the bundle needs, checked against its metadata.

    Needed: the modules the vendored code imports at module level, those the archive's configs import or name
    (:func:`config_modules`) and those MONAI needs to run them (:data:`MONAI_RUN_REQUIREMENTS`: ``fire`` for
    ``python -m monai.bundle``, PyYAML for ``large_files.yml``); they must come from MONAI's base set (``monai``,
    ``torch``, ``numpy``) or ``required_packages_version``. The vendored code's imports inside functions and ``try``
    blocks are needed only by some features; those not listed are reported. (There is no separate list for them:
    MONAI reads ``optional_packages_version`` as a deprecated name of ``required_packages_version`` and replaces the
    latter with it, ``monai.bundle.utils.DEPRECATED_ID_MAPPING``.) Modules are matched to distributions through the
    installed ones (``PIL`` -> ``pillow``, ``yaml`` -> ``PyYAML``); nothing is downloaded.

    Args:
        metadata: the metadata to check (default: the bundle's ``configs/metadata.json``).

    Returns:
        ``{"missing": [...], "optional": [...], "where": {module: [files or reasons]}}``: needed modules and
        feature-only modules not in ``required_packages_version``, and what imports each of them.
    """
    bundle_dir = os.path.abspath(bundle_dir)
    if metadata is None:
        with open(os.path.join(bundle_dir, "configs", "metadata.json"), encoding="utf-8") as f:
            metadata = json.load(f)
    entries, _ = _bundle_entries(bundle_dir, _excludes(exclude, include_demo), packages)
    configs = _archive_configs(entries)
    return _requirements(configs, _vendored(configs, packages), metadata, packages)


def check_weights_url(url: Any, what: str = "--weights_url") -> str:
    """``url`` if ``download_url`` can fetch it: ``https://host/...``, ``http://host/...`` or ``file:///path``.

    Raises:
        ValueError: empty, not text, with spaces, another scheme, or without a host (http/https) or path (file).
    """
    if not isinstance(url, str):
        raise ValueError(f"{what} must be a URL (text), got {type(url).__name__} {url!r}.")
    if not url.strip():
        raise ValueError(f"{what} is empty: give the http(s) or file URL the weights are downloaded from.")
    parsed = urllib.parse.urlparse(url)
    if url != url.strip() or any(c.isspace() for c in url):
        problem = "contains white space"
    elif parsed.scheme not in WEIGHTS_URL_SCHEMES:
        problem = f"has no {'/'.join(WEIGHTS_URL_SCHEMES)} scheme"
    elif parsed.scheme != "file" and not parsed.netloc:
        problem = "has no host"
    elif parsed.scheme == "file" and not parsed.path.strip("/"):
        problem = "has no path"
    else:
        return url
    raise ValueError(
        f"{what} '{url}' {problem}: give the http(s) or file URL the weights are downloaded from "
        "(https://host/path/model.pt, file:///path/model.pt)."
    )


def check_weights(
    bundle_dir: str, weights: str, configs: Sequence[str] = (), check_network: bool = True, net_id: str = "network_def"
) -> None:
    """Refuse weights that the bundle could not load: a missing or unreadable file (read like every checkpoint, with
    :func:`monai_ext.checkpoint.safe_torch_load`), no state dict in it, a state dict under a key (``{"model": ...}``,
    which MONAI's ``ckpt_export`` in the Model Zoo's CI would not find), or (``check_network``) weights that do not fit
    ``net_id`` built from ``configs/inference.json`` with ``configs`` merged on top (strict: every key and shape).

    Args:
        configs: config overlays (relative to the bundle or its ``configs/``) for weights of another variant of the
            network, e.g. ``configs/demo_inference.json`` for the demo's tiny CLIP.
        check_network: build the network to compare (a few seconds and the network's memory on CPU).

    Raises:
        FileNotFoundError: ``weights`` does not exist (:class:`monai_ext.checkpoint.CheckpointNotFoundError`).
        monai_ext.checkpoint.CheckpointError: (a ``ValueError``) the file is unusable or does not fit the network.
    """
    checkpoint = safe_torch_load(
        weights, missing_hint="--weights: give the trained checkpoint (train.json writes model.pt)."
    )
    source = f"Weights '{weights}'"
    state_dict = extract_state_dict(checkpoint, source=source)
    if state_dict.keys() != checkpoint.keys():
        keys = ", ".join(sorted(map(str, checkpoint))[:10])
        raise CheckpointError(
            f"{source} hold the network weights under a key of a checkpoint dict (top-level keys: {keys}). The Model "
            "Zoo's CI exports models/model.pt with MONAI's ckpt_export, which reads the file as the state dict itself "
            "and would keep the untrained weights: save the state dict alone, e.g. "
            "torch.save(torch.load(path)['model'], 'model.pt') (train.json's CheckpointSaver writes it so)."
        )
    if not check_network:
        return
    network = bundle_parser(bundle_dir, list(configs)).get_parsed_content(net_id)
    try:
        load_state_dict_checked(network, checkpoint, strict=True, source=source)
    except CheckpointError as error:
        built = ["configs/inference.json", *configs]
        raise CheckpointError(
            f"{error} (the network was built from {' + '.join(built)}; weights of another variant need its config "
            "overlays: --weights_configs)"
        ) from None


def archive_large_files(bundle_dir: str, weights_entry: Mapping[str, str] | None = None) -> list[dict]:
    """The entries of an archive's ``large_files.yml``: ``weights_entry`` (first) and the bundle's own entries that
    have a URL (others are placeholders: ``url: ""`` makes ``download_url`` fail; an entry for the same path as
    ``weights_entry`` is replaced by it).

    Raises:
        ValueError: a bundle entry's URL is not one :func:`check_weights_url` accepts.
    """
    entries = [dict(weights_entry)] if weights_entry else []
    replaced = {os.path.normpath(e["path"]) for e in entries}
    for entry in _read_large_files(bundle_dir):
        url = entry.get("url")
        if url in (None, "") or os.path.normpath(str(entry["path"])) in replaced:
            continue
        check_weights_url(url, f"large_files entry '{entry['path']}': url")
        entries.append(dict(entry))
    return entries


LARGE_FILES_HEADER = """\
# Written by monai_ext.bundle.packaging: what `python -m monai.bundle download_large_files` fetches
# (a file that is already there is checked against hash_val instead).
"""
NO_WEIGHTS_HEADER = """\
# No weights are listed yet: an empty list is what MONAI's download_large_files and the Model Zoo's CI
# read as nothing to download (an entry with url "" fails). Package with --weights PATH --weights_url URL
# to add models/model.pt.
"""


def _large_files_yml(entries: Sequence[Mapping[str, Any]]) -> bytes:
    import yaml

    header = LARGE_FILES_HEADER if entries else NO_WEIGHTS_HEADER
    body = yaml.safe_dump({"large_files": [dict(e) for e in entries]}, sort_keys=False, default_flow_style=False)
    return (header + body).encode("utf-8")


def _write_zip(f, entries: Mapping[str, bytes], files: Mapping[str, str]) -> None:
    """A deterministic zip of ``entries`` (name -> content) and ``files`` (name -> file on disk, stored as is)."""
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted({*entries, *files}):
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.external_attr = 0o644 << 16
            if name in files:
                info.compress_type = zipfile.ZIP_STORED  # checkpoints: torch.save zips, compressing gains little
                with open(files[name], "rb") as src, archive.open(info, "w", force_zip64=True) as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
            else:
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, entries[name])


def package_bundle(
    bundle_dir: str,
    output: str | None = None,
    packages: Sequence[str] = ("monai_ext",),
    name: str | None = None,
    exclude: Sequence[str] = (),
    include_demo: bool = True,
    check_requirements: bool = True,
    overwrite: bool = False,
    weights: str | None = None,
    weights_url: str | None = None,
    weights_configs: Sequence[str] = (),
    check_network: bool = True,
) -> dict[str, Any]:
    """Write ``output`` (default ``<name>_v<version>.zip``): the bundle with its code, ready for the Model Zoo.

    Args:
        bundle_dir: bundle folder (``configs/``, ``docs/``, ``LICENSE``...).
        output: zip path.
        packages: importable packages whose code the configs reference; the part of them that the archive's configs
            need (:func:`vendored_files`) is copied to ``<bundle>/scripts/<package>/``.
        name: folder name inside the archive (default: the bundle folder's name).
        exclude: more glob patterns (relative to the bundle) to leave out.
        include_demo: keep the demo configs (:data:`DEMO_CONFIGS`) and so the demo generators they call; ``False``
            leaves both out.
        check_requirements: refuse to package when the archive needs a third-party module (:func:`bundle_requirements`)
            that is neither MONAI/PyTorch/NumPy nor in the metadata's ``required_packages_version``.
        overwrite: replace an existing archive.
        weights: trained checkpoint to ship as ``models/model.pt`` (checked with :func:`check_weights`); needs
            ``weights_url``. Without it the archive has no weights and its ``large_files.yml`` lists none.
        weights_url: where users download the same file (``https://...`` or ``file://...``): written to the archive's
            ``large_files.yml`` with the file's SHA-256.
        weights_configs: config overlays the weights' network is built with for the check (:func:`check_weights`).
        check_network: compare the weights with the bundle's network (else only read them safely).

    Returns:
        ``{"archive", "files" (archive names), "skipped" (bundle paths left out), "requirements", "large_files"}``.

    Raises:
        ValueError: ``weights`` without ``weights_url`` or the reverse, a URL :func:`check_weights_url` refuses,
            weights that do not load or fit (:class:`monai_ext.checkpoint.CheckpointError`), missing requirements.
        FileNotFoundError: no bundle, or no ``weights`` file.

    Example::

        package_bundle("bundles/tgcnet", "dist/tgcnet_v0.1.0.zip", weights="runs/model.pt",
                       weights_url="https://github.com/<org>/<repo>/releases/download/v0.1.0/tgcnet_model.pt")
    """
    bundle_dir = os.path.abspath(bundle_dir)
    meta_path = os.path.join(bundle_dir, "configs", "metadata.json")
    if not os.path.isfile(meta_path):
        raise FileNotFoundError(f"'{bundle_dir}' is not a bundle: configs/metadata.json is missing.")
    with open(meta_path, encoding="utf-8") as f:
        metadata = json.load(f)
    name = name or os.path.basename(bundle_dir)
    output = output or f"{name}_v{metadata.get('version', '0')}.zip"
    if not overwrite and os.path.lexists(output):
        raise FileExistsError(f"Output '{output}' already exists; pass overwrite=True to replace it.")
    if (weights is None) != (weights_url is None):
        raise ValueError(
            "--weights and --weights_url go together: the archive ships the file as models/model.pt and its "
            "large_files.yml says where to download the same file (with its SHA-256)."
        )
    if weights is not None:
        check_weights_url(weights_url)
        check_weights(bundle_dir, weights, weights_configs, check_network=check_network)

    bundle_entries, skipped = _bundle_entries(bundle_dir, _excludes(exclude, include_demo), packages)
    configs = _archive_configs(bundle_entries)
    vendored = _vendored(configs, packages)
    requirements = _requirements(configs, vendored, metadata, packages)
    if check_requirements and requirements["missing"]:
        needs = "; ".join(f"{m} ({', '.join(requirements['where'][m])})" for m in requirements["missing"])
        raise ValueError(
            f"The archive needs {needs}, but metadata.json's required_packages_version does not list them: a Model "
            "Zoo user would not have them. Add them (with versions) or pass check_requirements=False."
        )

    entries = {f"{name}/{rel}": data for rel, data in bundle_entries.items() if rel not in LARGE_FILES_NAMES}
    for path, source in vendored.items():
        target = f"{name}/scripts/{path}"
        if target in entries:
            raise ValueError(f"The bundle already has '{target}'; remove it (the package is copied by packaging).")
        with open(source, "rb") as f:
            entries[target] = f.read()
    init_name = f"{name}/scripts/__init__.py"
    # Formatted as black writes it (double quotes), so that the archive passes the Model Zoo's format check.
    generated = SCRIPTS_INIT.format(packages=", ".join(packages), package_names=json.dumps(list(packages)))
    generated = generated.encode("utf-8")
    entries[init_name] = generated + (b"\n" + entries[init_name] if init_name in entries else b"")

    files: dict[str, str] = {}
    digests: dict[str, str] = {}
    weights_entry = None
    if weights is not None:
        files[f"{name}/{WEIGHTS_PATH}"] = weights
        digests[f"{name}/{WEIGHTS_PATH}"] = sha256_file(weights)
        weights_entry = {
            "path": WEIGHTS_PATH,
            "url": weights_url,
            "hash_val": digests[f"{name}/{WEIGHTS_PATH}"],
            "hash_type": WEIGHTS_HASH_TYPE,
        }
    large_files = archive_large_files(bundle_dir, weights_entry)
    entries[f"{name}/{LARGE_FILES_NAMES[0]}"] = _large_files_yml(large_files)
    digests.update({k: hashlib.sha256(v).hexdigest() for k, v in entries.items()})

    manifest = "".join(f"{digests[k]}  {k[len(name) + 1:]}\n" for k in sorted(digests))
    entries[f"{name}/{MANIFEST_NAME}"] = manifest.encode("utf-8")
    with atomic_write(output, mode="wb", overwrite=overwrite) as f:
        _write_zip(f, entries, files)
    return {
        "archive": os.path.abspath(output),
        "files": sorted({*entries, *files}),
        "skipped": skipped,
        "requirements": requirements,
        "large_files": large_files,
    }


def _entry_sha256(archive: zipfile.ZipFile, name: str) -> str:
    digest = hashlib.sha256()
    with archive.open(name) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_bundle_archive(archive: str) -> list[str]:
    """Check every file of a packaged bundle against its ``sha256sums.txt``; returns the problems (empty: all good)."""
    problems = []
    with zipfile.ZipFile(archive) as z:
        names = [n for n in z.namelist() if not n.endswith("/")]
        manifests = [n for n in names if n.count("/") == 1 and n.endswith("/" + MANIFEST_NAME)]
        if len(manifests) != 1:
            return [f"expected one <bundle>/{MANIFEST_NAME}, found {manifests}"]
        prefix = manifests[0][: -len(MANIFEST_NAME)]
        listed = {}
        for line in z.read(manifests[0]).decode("utf-8").splitlines():
            digest, _, path = line.partition("  ")
            listed[prefix + path] = digest
        for entry in names:
            if entry == manifests[0]:
                continue
            if entry not in listed:
                problems.append(f"{entry}: not in the manifest")
            elif _entry_sha256(z, entry) != listed[entry]:
                problems.append(f"{entry}: SHA-256 differs from the manifest")
        problems += [f"{path}: in the manifest but not in the archive" for path in listed if path not in names]
    return problems
