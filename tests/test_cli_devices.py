"""`anasim devices`: lists and validates profiles; bad ones give one line and exit code 2."""

import json
import subprocess
import sys
from pathlib import Path

from anasim.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_lists_the_default_folder(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    for name in ("ideal", "slm-10bit", "reram", "gyrator-gmc", "adc-8bit"):
        assert any(line.split()[0] == name for line in out.splitlines())


def test_json_output(capsys):
    assert main(["devices", str(ROOT / "devices" / "slm-10bit.toml"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    (p,) = data["profiles"]
    assert p["name"] == "slm-10bit" and p["coupling"] == "slm" and data["errors"] == []
    assert p["parameters"]["coupling"]["bits"] == 10 and p["parameters"]["adc"] is None


def test_bad_profile_one_line_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[slm]\nbits = -4\n")
    assert main(["devices", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(bad) in err and "bits" in err and "Traceback" not in err


def test_missing_path_exit_2(tmp_path, capsys):
    assert main(["devices", str(tmp_path / "none.toml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "none.toml" in err


def test_subprocess_bad_profile(tmp_path):
    bad = tmp_path / "nan.toml"
    bad.write_text("[adc]\nnoise_lsb = nan\n")
    r = subprocess.run([sys.executable, "-m", "anasim.cli", "devices", str(bad)], capture_output=True, text=True,
                       cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "noise_lsb" in r.stderr and "Traceback" not in r.stderr


def test_energy_parameters_with_units_and_sources(capsys):
    assert main(["devices", str(ROOT / "devices" / "reram.toml"), "--json"]) == 0
    (p,) = json.loads(capsys.readouterr().out)["profiles"]
    e = p["energy_parameters"]["coupling"]
    assert e["pulse_width_s"] == {"value": 50e-9, "unit": "s", "default": 50e-9, "source": e["pulse_width_s"]["source"]}
    assert "Wong" in e["pulse_width_s"]["source"] and all(v["unit"] and v["source"] for v in e.values())
    assert main(["devices", str(ROOT / "devices" / "slm-10bit.toml"), "--sources"]) == 0
    out = capsys.readouterr().out
    assert "energy coupling.frame_rate_hz = 1000 Hz  [LCOS" in out
    # a value the profile sets itself points to the profile file and names the model default's source
    assert "energy coupling.wall_plug_efficiency = 0.1  [set by the profile (see its file); default 0.3:" in out
