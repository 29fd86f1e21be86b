"""The documentation's generated pages (``hashbench/docs_pages.py``): a results page is the report
of its runs, a change to a run or to a page is caught by ``check``, the README's table block is
the report's table; and the committed README is a front page whose links resolve."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from runfiles import write_run

from hashbench import docs_pages
from hashbench.docs_pages import Page, Section

REPO = Path(__file__).resolve().parent.parent
README_TEXT = f"""# x

before

{docs_pages.README_BEGIN}
old table
{docs_pages.README_END}

after
"""


@pytest.fixture
def tiny_repo(tmp_path):
    """A repository with three runs (itq seeds 0 and 1, lsh seed 0) and a README with the block."""
    runs = tmp_path / "results" / "store" / "runs"
    write_run(runs, "itq", 16, 0, [0.4, 0.4])
    write_run(runs, "itq", 16, 1, [0.6, 0.6])
    write_run(runs, "lsh", 16, 0, [0.1, 0.3])
    (tmp_path / "README.md").write_text(README_TEXT)
    (tmp_path / "docs" / "results").mkdir(parents=True)
    return tmp_path


PAGES = (Page("cifar10", "Tiny", "Three runs.",
              (Section("mAP@all", ("results/store/runs",), ("--no-ci",), figures=("map_vs_bits",)),)),)


def write_all(repo: Path) -> None:
    for path, text in docs_pages.expected_files(repo, PAGES, figures=True).items():
        path.write_text(text)


def test_page_is_the_report_of_its_runs_and_check_sees_drift(tiny_repo):
    write_all(tiny_repo)
    page = (tiny_repo / "docs" / "results" / "cifar10.md").read_text()
    # itq: mean of 0.4 and 0.6 = 0.500, sample std = 0.2/sqrt(2) = 0.141; lsh: mean AP (0.1+0.3)/2 = 0.200
    assert re.search(r"\| itq\s+\| \*\*0\.500 ± 0\.141\*\*", page)
    assert re.search(r"\| lsh\s+\| 0\.200\s+\|", page)
    assert "`hashbench report results/store/runs --no-ci`" in page and "![map vs bits](cifar10/map_vs_bits.png)" in page
    assert (tiny_repo / "docs" / "results" / "cifar10" / "map_vs_bits.png").stat().st_size > 0
    readme = (tiny_repo / "README.md").read_text()
    assert readme.startswith("# x\n\nbefore\n") and readme.endswith("\n\nafter\n") and "old table" not in readme
    assert "| itq" in readme and "Dropped" not in readme
    assert docs_pages.stale(tiny_repo, PAGES) == []

    page_path = tiny_repo / "docs" / "results" / "cifar10.md"
    page_path.write_text(page.replace("0.500 ± 0.141", "0.510 ± 0.141"))
    (diff,) = docs_pages.stale(tiny_repo, PAGES)
    assert "docs/results/cifar10.md (committed)" in diff and "-| itq" in diff and "+| itq" in diff
    page_path.write_text(page)

    metrics = next((tiny_repo / "results" / "store" / "runs").glob("lsh_*")) / "metrics.csv"
    metrics.write_text(metrics.read_text().replace(",0.2,", ",0.25,", 1))
    stale = docs_pages.stale(tiny_repo, PAGES)
    assert len(stale) == 2 and "0.250" in stale[0] and "README.md" in stale[1]  # the page and the README block

    (tiny_repo / "docs" / "results" / "cifar10" / "map_vs_bits.png").unlink()
    assert "missing figure docs/results/cifar10/map_vs_bits.png" in docs_pages.stale(tiny_repo, PAGES)[-1]


def test_run_folders_filter_on_settings(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "dht", 16, 0, [0.5], name="a")
    write_run(runs, "dht", 16, 0, [0.5], name="b", settings="sparsity=2")
    assert docs_pages.run_folders(("runs",), tmp_path) == ["runs"]
    assert docs_pages.run_folders(("runs",), tmp_path, "") == ["runs/a"]
    assert docs_pages.run_folders(("runs",), tmp_path, "sparsity=2") == ["runs/b"]
    with pytest.raises(FileNotFoundError, match="no run folder matches 'nothing/\\*'"):
        docs_pages.run_folders(("nothing/*",), tmp_path)


def test_readme_block_needs_both_markers():
    assert docs_pages.replace_readme_block(f"a{docs_pages.README_BEGIN}x{docs_pages.README_END}b", "T") == \
        f"a{docs_pages.README_BEGIN}\nT\n{docs_pages.README_END}b"
    with pytest.raises(ValueError, match="no <!-- begin generated"):
        docs_pages.replace_readme_block(f"a{docs_pages.README_BEGIN}x", "T")
    assert docs_pages.headline_block("| t |\n\n_note_\n\nDropped (2):\n\n- r\n") == "| t |\n\n_note_"


def test_cli_reference_has_every_command():
    text = docs_pages.cli_reference()
    for command in ("hashbench", "hashbench run", "hashbench evaluate", "hashbench list", "hashbench report",
                    "hashbench regress", "hashbench sweep"):
        assert f"## `{command}`\n\n```text\nusage: {command} " in text
    assert str(REPO) not in text


def test_protocols_page_lists_every_builtin_protocol():
    from hashbench import datasets

    text = docs_pages.protocols_page()
    assert "| `query300-db1497` (default) | all | " in text and "| `lists` (default) | 5000 | " in text
    for name in datasets.available():
        spec = datasets.get_dataset(name)
        for protocol in spec.protocols:
            assert f"| `{protocol}`" in text.split(f"## `{name}`\n")[1].split("\n## ")[0], (name, protocol)


def test_committed_readme_is_a_front_page_whose_links_resolve():
    readme = (REPO / "README.md").read_text()
    assert len(readme.split()) <= 2000
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    assert "docs/adding-a-method.md" in targets and "docs/results/index.md" in targets
    for target in targets:
        assert (REPO / target).is_file(), target
    # the README's table is the committed `make report-readme` table (which `docs_pages check` regenerates)
    table = (REPO / "results" / "report" / "cifar10" / "table.md").read_text()
    assert f"{docs_pages.README_BEGIN}\n{docs_pages.headline_block(table)}\n{docs_pages.README_END}" in readme


def test_every_page_spec_names_committed_runs_and_the_site_lists_every_page():
    for page in docs_pages.PAGES:
        for section in page.sections:
            assert docs_pages.run_folders(section.runs, REPO, section.settings)
    nav = (REPO / "mkdocs.yml").read_text()
    for page in [*(f"results/{p.name}.md" for p in docs_pages.PAGES), "cli-reference.md", "protocols.md", "methods.md"]:
        assert f": {page}\n" in nav, page
