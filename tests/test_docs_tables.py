"""The manual's tables of measured figures are rendered from result files."""

import importlib.util
import json

import pytest


@pytest.fixture(scope="module")
def tables(repo_root):
    spec = importlib.util.spec_from_file_location("docs_tables", repo_root / "docs" / "hooks" / "tables.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_figures_table(tables, tmp_path):
    (tmp_path / "r.json").write_text(json.dumps({
        "date": "2026-11-23", "machine": "2 cores", "source": "measured", "command": "python b.py",
        "figures": {"ratio": {"value": 0.99, "unit": "1", "label": "ideal ratio"},
                    "rate": {"value": 810.0, "unit": "examples/s", "label": "a|b"}}}))
    md = tables.replace_tables("before\n{{ table: r.json }}\nafter", tmp_path)
    assert md == ("before\n"
                  "| figure | value | unit |\n|---|---|---|\n"
                  "| ideal ratio | 0.99 | 1 |\n| a\\|b | 810 | examples/s |\n\n"
                  "*date: 2026-11-23; machine: 2 cores; measured; `python b.py`.*\n"
                  "after")


def test_named_table(tables, tmp_path):
    (tmp_path / "t.json").write_text(json.dumps({
        "tables": {"per_epoch": {"columns": ["epoch", "test"], "rows": [[1, 0.8], [2, None]]}}}))
    md = tables.replace_tables("{{table: t.json#per_epoch}}", tmp_path)
    assert md == "| epoch | test |\n|---|---|\n| 1 | 0.8 |\n| 2 | – |"


def test_errors_name_the_file(tables, tmp_path):
    with pytest.raises(tables.TableError, match="missing.json: results file not found"):
        tables.replace_tables("{{ table: missing.json }}", tmp_path)
    (tmp_path / "t.json").write_text(json.dumps({"tables": {"a": {"columns": ["x"], "rows": [[1]]}}}))
    with pytest.raises(tables.TableError, match=r"t.json: no table 'b' \(has: a\)"):
        tables.replace_tables("{{ table: t.json#b }}", tmp_path)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(tables.TableError, match="bad.json: cannot read"):
        tables.replace_tables("{{ table: bad.json }}", tmp_path)


def test_netcdf_table(tables, tmp_path):
    xr = pytest.importorskip("xarray")
    ds = xr.Dataset({"test_accuracy": ("epoch", [0.5, 0.75])}, coords={"epoch": [1, 2]})
    ds.to_netcdf(tmp_path / "run.nc", engine="h5netcdf")
    assert tables.render(tmp_path, "run.nc") == "| epoch | test_accuracy |\n|---|---|\n| 1 | 0.5 |\n| 2 | 0.75 |"


def test_every_placeholder_in_the_manual_renders(tables, repo_root):
    for page in (repo_root / "docs").rglob("*.md"):
        tables.replace_tables(page.read_text(encoding="utf-8"), repo_root)


def test_energy_sources_table_comes_from_the_code(tables, tmp_path):
    from anasim.devices import SLMCrossbar

    md = tables.replace_tables("{{ energy_sources }}", tmp_path)
    lines = md.splitlines()
    assert lines[0] == "| parameter | default | unit | source |"
    src = SLMCrossbar.__dataclass_fields__["frame_rate_hz"].metadata["source"]
    assert f"| SLM `frame_rate_hz` | 1000 | Hz | {src} |" in lines
    assert any(line.startswith("| ADC and DAC `fom_j_per_step` | 1e-14 | J/conv-step |") for line in lines)
