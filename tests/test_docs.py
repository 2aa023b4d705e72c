"""The documentation agrees with the code: the generated API reference is current, every
service function says what it does, and the guide names every setting and check id."""

from __future__ import annotations

import importlib.util
import inspect
import re
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "api_reference.py"
REFERENCE = ROOT / "docs" / "service-api.md"
GUIDE = ROOT / "docs" / "use-in-your-shop.md"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("api_reference", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def service_functions() -> list[str]:
    from cartsvc import service

    return sorted(name for name in service.__all__ if inspect.isfunction(getattr(service, name)))


def test_the_service_api_reference_is_up_to_date():
    expected = load_script().generate()
    assert REFERENCE.read_text(encoding="utf-8") == expected, (
        "docs/service-api.md is out of date: run `python scripts/api_reference.py`"
    )


def test_the_reference_is_the_same_on_every_run():
    script = load_script()
    assert script.generate() == script.generate()


def test_the_check_option_fails_on_a_stale_reference(tmp_path, monkeypatch, capsys):
    script = load_script()
    stale = tmp_path / "service-api.md"
    stale.write_text("stale\n", encoding="utf-8")
    monkeypatch.setattr(script, "OUTPUT", stale)
    monkeypatch.setattr(script, "ROOT", tmp_path)
    assert script.main(["--check"]) == 1
    assert "run `python scripts/api_reference.py`" in capsys.readouterr().err
    assert stale.read_text(encoding="utf-8") == "stale\n"  # --check writes nothing


@pytest.mark.parametrize("name", service_functions())
def test_every_service_function_has_a_docstring(name):
    from cartsvc import service

    doc = inspect.getdoc(getattr(service, name))
    assert doc and doc.strip(), f"cartsvc.service.{name} has no docstring"


def test_every_service_function_is_in_the_reference():
    text = REFERENCE.read_text(encoding="utf-8")
    for name in service_functions():
        assert f"### `{name}`" in text, name


def check_ids() -> list[str]:
    import cartsvc.checks

    ids = re.findall(r"cartimage\.[EW]\d{3}", cartsvc.checks.__doc__ or "")
    assert ids, "no check ids found in cartsvc/checks.py's docstring"
    return sorted(set(ids))


@pytest.mark.parametrize("check_id", check_ids())
def test_the_guide_lists_every_check_id(check_id):
    assert check_id in GUIDE.read_text(encoding="utf-8")


def test_the_guide_lists_every_setting():
    from cartsvc.conf import DEFAULTS

    text = GUIDE.read_text(encoding="utf-8")
    missing = [key for key in DEFAULTS if f"`{key}`" not in text]
    assert not missing, f"docs/use-in-your-shop.md does not describe {missing}"


def documents() -> list[Path]:
    return sorted([*(ROOT / "docs").rglob("*"), ROOT / "README.md", ROOT / "CHANGELOG.md"])


@pytest.mark.parametrize(
    "path", [p for p in documents() if p.is_file()], ids=lambda p: str(p.relative_to(ROOT))
)
def test_no_document_points_outside_the_repository(path):
    """Readers have this repository, nothing beside it: no links to a ../shared folder."""
    assert "../shared" not in path.read_text(encoding="utf-8"), path
