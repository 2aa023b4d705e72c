"""The documentation agrees with the code: the generated API reference is current, every
service function says what it does, the guide names every setting and check id, no link leaves
the repository, the architecture document names every module of the app and nothing that is
gone, and the README's first steps work."""

from __future__ import annotations

import importlib.util
import inspect
import io
import re
import shlex
from pathlib import Path
from types import ModuleType

import pytest
from django.core.management import call_command

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


# ---------------------------------------------------------------- links and the architecture

ARCHITECTURE = ROOT / "docs" / "architecture.md"
README = ROOT / "README.md"
# Not the project's documents: tools' caches, build output, test artifacts, the virtualenv.
NOT_OURS = {"node_modules", "build", "dist", "artifacts", "var", "htmlcov"}


def markdown_files() -> list[Path]:
    found = []
    for path in ROOT.rglob("*.md"):
        parts = path.relative_to(ROOT).parts
        if any(p.startswith(".") or p in NOT_OURS or p.endswith(".egg-info") for p in parts):
            continue
        found.append(path)
    return sorted(found)


CODE_BLOCK = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
INDENTED_CODE = re.compile(r"^(?: {4}|\t).*$", re.M)
CODE_SPAN = re.compile(r"(`+).+?\1", re.S)
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'(][^)]*)?\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = CODE_BLOCK.sub("", path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.M):
        name, n = slug(heading), 1
        while name in found:
            name = f"{slug(heading)}-{n}"
            n += 1
        found.add(name)
    return found


def links(text: str) -> list[str]:
    prose = CODE_SPAN.sub("", INDENTED_CODE.sub("", CODE_BLOCK.sub("", text)))
    return INLINE_LINK.findall(prose) + REFERENCE_LINK.findall(prose)


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    """Every relative link of a Markdown file that leaves `root` or names nothing there."""
    broken = []
    for target in links(path.read_text(encoding="utf-8")):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):
            continue  # https:, mailto: ...: not a file of the repository
        file_part, _, anchor = target.partition("#")
        if not file_part:
            resolved = path
        elif file_part.startswith("/"):
            resolved = (root / file_part.lstrip("/")).resolve()
        else:
            resolved = (path.parent / file_part).resolve()
        if not resolved.is_relative_to(root.resolve()):
            broken.append(f"{target}: outside the repository")
        elif not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading #{anchor} in {resolved.name}")
    return broken


def test_every_markdown_file_of_the_project_is_checked():
    names = {str(p.relative_to(ROOT)) for p in markdown_files()}
    assert {"README.md", "CHANGELOG.md", "docs/architecture.md"} <= names, names


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_markdown_link_leaves_the_repository_or_names_a_missing_file(path):
    assert not broken_links(path), f"{path.relative_to(ROOT)}: {broken_links(path)}"


def test_the_link_check_catches_links_out_of_the_repository_and_missing_files(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "there.md").write_text("# Real heading\n", encoding="utf-8")
    page = tmp_path / "docs" / "page.md"
    page.write_text(
        "[design](../shared/DESIGN.md) [up](../../elsewhere.md) [gone](missing.md)\n"
        "[ok](../there.md) [ok](../there.md#real-heading) [bad](../there.md#no-such)\n"
        "[web](https://example.com/x.md) [here](#top)\n\n# Top\n\n"
        "`[in code](../shared/x.md)`\n\n    [indented code](../shared/y.md)\n\n"
        "[ref]: ../shared/ref.md\n",
        encoding="utf-8",
    )
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "DESIGN.md").write_text("x", encoding="utf-8")
    found = broken_links(page, root=tmp_path / "docs")
    assert found == [
        "../shared/DESIGN.md: outside the repository",
        "../../elsewhere.md: outside the repository",
        "missing.md: no such file",
        "../there.md: outside the repository",
        "../there.md#real-heading: outside the repository",
        "../there.md#no-such: outside the repository",
        "../shared/ref.md: outside the repository",
    ]
    assert broken_links(page, root=tmp_path) == [
        "../../elsewhere.md: outside the repository",
        "missing.md: no such file",
        "../there.md#no-such: no heading #no-such in there.md",
        "../shared/ref.md: no such file",
    ]


def test_the_readme_links_the_architecture_document():
    assert "](docs/architecture.md)" in README.read_text(encoding="utf-8")


def architecture_paths() -> list[str]:
    """Every repository path the architecture document names (`cartsvc/image.py`, ...)."""
    if not ARCHITECTURE.exists():
        return []  # test_the_architecture_document_names_paths fails
    text = ARCHITECTURE.read_text(encoding="utf-8")
    found = re.findall(
        r"(?<![\w./-])((?:cartsvc|carts|config|tests|docs|scripts|bench|deploy)/[\w./-]*)", text
    )
    return sorted({p.rstrip(".") for p in found})


def test_the_architecture_document_names_paths():
    assert "cartsvc/image.py" in architecture_paths()


@pytest.mark.parametrize("named", architecture_paths())
def test_every_path_the_architecture_document_names_exists(named):
    assert (ROOT / named).exists(), f"docs/architecture.md names {named}, which does not exist"


def cartsvc_modules() -> list[str]:
    app = ROOT / "cartsvc"
    files = [f"cartsvc/{p.name}" for p in app.glob("*.py") if p.name != "__init__.py"]
    packages = [f"cartsvc/{p.parent.name}/" for p in app.glob("*/__init__.py")]
    return sorted(files + packages)


@pytest.mark.parametrize("module", cartsvc_modules())
def test_the_architecture_document_describes_every_module_of_the_app(module):
    assert f"`{module}`" in ARCHITECTURE.read_text(encoding="utf-8"), (
        f"docs/architecture.md does not describe {module}"
    )


def test_the_architecture_document_stays_inside_the_project():
    text = ARCHITECTURE.read_text(encoding="utf-8")
    assert "../shared" not in text and "DESIGN.md" not in text


# ---------------------------------------------------------------- the README's first steps


def getting_started() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("## Getting started")
    return text[start : text.index("\n## ", start + 1)]


def test_the_readme_opens_with_the_two_commands_then_getting_started():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert lines[2].split()[:2] == ["make", "run"]
    assert lines[3].split()[:2] == ["make", "test"]
    assert "## Getting started" in lines[4:8]


def test_getting_started_names_the_admin_the_api_the_address_and_production():
    from django.urls import reverse

    text = getting_started()
    needed = [
        ".venv/bin/python manage.py createsuperuser",
        "http://127.0.0.1:8000/admin/",
        "`/api/v1/`",
        f"http://127.0.0.1:8000{reverse('cartimage_api:openapi')}",
        "make run PORT=8001",
        "HOST=",
        "DJANGO_SECRET_KEY",
        "DJANGO_DEBUG",
        "DJANGO_ALLOWED_HOSTS",
        "](#production)",
    ]
    assert [n for n in needed if n not in text] == []


def readme_requests() -> list[tuple[str, str, dict[str, str], str | None]]:
    """The README's curl example as (method, url, headers, body), in order."""
    code = "\n".join(
        line.strip() for line in getting_started().splitlines() if line.startswith("      ")
    )
    found = []
    for command in re.findall(r"curl\s+([^|\n]+)", code.replace("\\\n", " ")):
        words = shlex.split(command)
        method, headers, body, url = "GET", {}, None, None
        while words:
            word = words.pop(0)
            if word == "-X":
                method = words.pop(0)
            elif word == "-H":
                name, _, value = words.pop(0).partition(":")
                headers[name.strip()] = value.strip()
            elif word == "-d":
                body = words.pop(0)
                method = "POST" if method == "GET" else method
            elif not word.startswith("-"):
                url = word
        assert url is not None, command
        found.append((method, url, headers, body))
    return found


@pytest.mark.django_db
def test_the_readme_api_example_works_on_the_seeded_demo(client):
    """The curl lines, sent as they are written, to what `make run` serves (the demo seeded)."""
    call_command("seed_demo", stdout=io.StringIO())
    requests = readme_requests()
    assert [method for method, *_ in requests] == ["POST", "POST", "GET"]
    cart_id = None
    for method, url, headers, body in requests:
        assert url.startswith("http://127.0.0.1:8000/api/v1/"), url
        path = url.removeprefix("http://127.0.0.1:8000")
        if cart_id is not None:
            path = path.replace("$CART", cart_id)
        assert "$" not in path, path
        response = client.generic(
            method,
            path,
            (body or "").encode(),
            content_type=headers.get("Content-Type", ""),
        )
        assert response.status_code in (200, 201), (url, response.content)
        cart_id = response.json()["id"]
    lines = response.json()["lines"]
    assert [(line["sku"], line["quantity"]) for line in lines] == [("SKU-0001", 2)]
