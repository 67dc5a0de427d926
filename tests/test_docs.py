"""README.md is a front page and docs/ the reference: the README stays short, every relative link (and
anchor) in them leads somewhere, every script or module a command names exists, and none names a path of
a particular machine. The folder READMEs that are references too (scripts/, minimizers/) are held to the
same rules."""
import glob
import importlib.util
import os
import re
import sys
import unicodedata

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FOLDER_READMES = ["scripts/README.md", "minimizers/README.md"]
DOCS = (["README.md"] + FOLDER_READMES
        + sorted(os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "docs", "*.md"))))
README_MAX_LINES = 220

FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"(?<!!)\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
IMAGE = re.compile(r"!\[[^\]]*\]\(\s*<?([^)\s>]+)>?\s*\)")
MODULE = re.compile(r"\bpython3? -m (scripts(?:\.[A-Za-z_]\w*)+)")
SCRIPT_FILE = re.compile(r"\b(?:python3?|bash|sh)\s+((?:\./)?[\w./-]+\.(?:py|sh))\b")
EXAMPLE = re.compile(r"\b(example_\w+\.py)\b")
SCRIPTS_SH = re.compile(r"(?<![\w/.])(scripts/[\w./-]+\.sh)\b")


def read(path):
    with open(os.path.join(REPO, path), encoding="utf-8") as f:
        return f.read()


def prose(text):
    """The text outside code blocks and code spans (where a [x](y) is not a link)."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def slug(heading):
    """GitHub's anchor for a heading's text: markup dropped, lower case, punctuation removed, spaces to '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)       # links and images: their text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "")
    text = text.strip().lower()
    kept = []
    for char in text:
        if char in " -_" or char.isalnum() or unicodedata.category(char).startswith("M"):
            kept.append(char)
    return "".join(kept).replace(" ", "-")


def anchors(path):
    """Every anchor the headings of a Markdown file produce (duplicates get -1, -2, ... as on GitHub)."""
    seen, result = {}, set()
    for line in FENCE.sub("", read(path)).splitlines():
        match = re.match(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        base = slug(match.group(2).replace("*", ""))
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def links(path):
    text = prose(read(path))
    return [target for pattern in (LINK, IMAGE) for target in pattern.findall(text)]


def test_readme_is_a_front_page():
    lines = read("README.md").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move reference text into docs/"


def test_the_readme_keeps_the_test_command_ci_reads():
    assert "pip install -r requirements.txt && python -m pytest" in read("README.md")


@pytest.mark.parametrize("path", DOCS)
def test_relative_links_and_anchors_exist(path):
    problems = []
    here = os.path.dirname(os.path.join(REPO, path))
    for target in links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):     # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        resolved = os.path.normpath(os.path.join(here, file_part)) if file_part else os.path.join(REPO, path)
        if not os.path.exists(resolved):
            problems.append(f"{target}: no such file")
            continue
        if not os.path.realpath(resolved).startswith(os.path.realpath(REPO) + os.sep):
            problems.append(f"{target}: outside the repository")
            continue
        if anchor and resolved.endswith(".md") and anchor not in anchors(os.path.relpath(resolved, REPO)):
            problems.append(f"{target}: no heading makes the anchor #{anchor}")
    assert not problems, f"{path}: " + "; ".join(problems)


@pytest.mark.parametrize("path", DOCS)
def test_commands_name_existing_modules_and_files(path):
    text = read(path)
    if REPO not in sys.path:
        sys.path.insert(0, REPO)
    problems = []
    for module in sorted(set(MODULE.findall(text))):
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:     # a parent package is missing
            found = False
        if not found:
            problems.append(f"python -m {module}: no such module")
    files = set(SCRIPT_FILE.findall(text)) | set(EXAMPLE.findall(text)) | set(SCRIPTS_SH.findall(text))
    for name in sorted(files):
        if not os.path.exists(os.path.join(REPO, name)):
            problems.append(f"{name}: no such file")
    assert not problems, f"{path}: " + "; ".join(problems)


@pytest.mark.parametrize("path", DOCS)
def test_docs_name_no_path_of_a_particular_machine(path):
    text = read(path)
    assert not re.search(r"(?<![\w.])/(work|home|root|Users|tmp)/", text), f"{path} names a machine's path"
    assert "../shared" not in text, path


def test_the_slug_rule():
    assert slug("One run on several GPUs (torchrun, DDP)") == "one-run-on-several-gpus-torchrun-ddp"
    assert slug("`example_continual.py`") == "example_continualpy"
    assert slug("k × α heatmaps") == "k--α-heatmaps"
    assert slug("The CPU-scale study (results/cpu_study/)") == "the-cpu-scale-study-resultscpu_study"
