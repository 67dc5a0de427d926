"""The registry is the one source of every name, hyperparameter and default: docs/minimizers.md's table, CLI help,
create() with keywords; validators live in one module."""
import ast
import glob
import inspect
import os

import pytest

import minimizers
from minimizers import registry
from reference import build, make_model
from training.settings import HPARAM_FLAGS, CifarSettings, ContinualSettings, build_parser

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_docs_table_is_the_generated_one():
    with open(os.path.join(REPO, "docs", "minimizers.md")) as f:
        assert minimizers.markdown_table() in f.read(), "regenerate with python -c 'import minimizers; " \
                                                        "print(minimizers.markdown_table())'"


def test_cli_help_states_every_library_default():
    for settings_class in (CifarSettings, ContinualSettings):
        check_library_defaults_in_help(build_parser(settings_class, ""))


def check_library_defaults_in_help(parser):
    helps = {action.dest: action.help for action in parser._actions}
    for key in HPARAM_FLAGS:
        for value, names in minimizers.defaults_by_value(key).items():
            assert str(value) in helps[key], (key, value)
            if len(minimizers.defaults_by_value(key)) > 1:
                assert all(name in helps[key] for name in names), key


@pytest.mark.parametrize("name", minimizers.available())
def test_defaults_are_the_signature_defaults_and_create_passes_keywords(name):
    spec = minimizers.describe(name)
    defaults = minimizers.hparams(name)
    declared = {}
    for cls in (spec.ascent, spec.cls):
        if cls is not None:
            declared.update({k: p.default for k, p in inspect.signature(cls).parameters.items()
                             if p.default is not p.empty})
    for key, value in defaults.items():
        if key not in spec.defaults_override and not spec.inner:
            assert declared[key] == value, (name, key)
    changed = {key: (not value if isinstance(value, bool) else value) for key, value in defaults.items()
               if isinstance(value, bool)}
    m = build(name, make_model(), **changed)       # keywords reach the class
    for key, value in changed.items():
        assert getattr(m, key, getattr(getattr(m, "inner", None), key, value)) == value, (name, key)
    with pytest.raises(ValueError, match="does not take"):
        build(name, make_model(), not_a_hyperparameter=1)


def test_aliases_and_canonical_names():
    assert minimizers.canonical_name("BSAM") == "BilateralSAM"
    assert minimizers.canonical_name("lookbehind-sam") == "Lookbehind_SAM"
    assert "BSAM" not in minimizers.available()


def test_validators_come_from_one_module_and_no_algorithm_imports_another_for_one():
    for path in glob.glob(os.path.join(REPO, "minimizers", "*.py")):
        tree = ast.parse(open(path).read())
        defined = [node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)
                   and node.name.startswith("check_") and node.col_offset == 0]
        if os.path.basename(path) != "checks.py":
            assert not defined, (path, defined)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if alias.name.startswith("check_"):
                        assert node.module == "checks", (path, node.module, alias.name)


def test_one_registry_module():
    assert {id(s) for s in registry._REGISTRY.values()} == {id(minimizers.describe(n)) for n in minimizers.available()}
    assert not os.path.exists(os.path.join(REPO, "minimizers", "variants.py"))
