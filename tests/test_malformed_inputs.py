"""Malformed inputs through the CLI: every one is refused with exit code 2 and
exactly one line on stderr naming the file or flag, never a traceback.

Each case writes its files under tmp_path and runs ``anasim.cli.main`` in
process (errors come before any numerical work, so the whole table is fast).
"""

from __future__ import annotations

import pytest

from anasim.cli import main

JUNK = bytes(range(256)) * 4
LATIN1 = '[profile]\nname = "caf\xe9"\n'.encode("latin-1")
PROFILE = "[profile]\nname = \"p\"\n"
NET = "[network]\nsizes = [4, 3, 2]\nlam = 1.0\n"
NETLIST_OK = "t\nV1 a 0 1\nR1 a 0 1k\n.end\n"


def sweep(body: str) -> str:
    return 'measurement = "train"\n[base]\ncircuit = "c.toml"\n' + body


# (id, files {name: text | bytes | None for a directory}, argv with {d} for tmp_path, text the line names)
CASES = [
    # --- device profiles (anasim devices) ---
    ("profile-junk", {"p.toml": JUNK}, ["devices", "{d}/p.toml"], "p.toml"),
    ("profile-latin1", {"p.toml": LATIN1}, ["devices", "{d}/p.toml"], "p.toml"),
    ("profile-bad-toml", {"p.toml": "[profile\nname="}, ["devices", "{d}/p.toml"], "p.toml"),
    ("profile-empty", {"p.toml": ""}, ["devices", "{d}/p.toml"], "p.toml"),
    ("profile-unknown-key", {"p.toml": PROFILE + "bogus = 1\n"}, ["devices", "{d}/p.toml"], "bogus"),
    ("profile-unknown-table", {"p.toml": PROFILE + "[bogus]\nx = 1\n"}, ["devices", "{d}/p.toml"], "bogus"),
    ("profile-name-type", {"p.toml": "[profile]\nname = 3\n"}, ["devices", "{d}/p.toml"], "name"),
    ("profile-nan", {"p.toml": PROFILE + "loop_time_s = nan\n"}, ["devices", "{d}/p.toml"], "loop_time_s"),
    ("profile-inf", {"p.toml": PROFILE + "energy_per_mac_j = inf\n"}, ["devices", "{d}/p.toml"], "energy_per_mac_j"),
    ("profile-negative-time", {"p.toml": PROFILE + "loop_time_s = -1.0\n"}, ["devices", "{d}/p.toml"], "loop_time_s"),
    ("profile-resistive-nan", {"p.toml": PROFILE + "[resistive]\nw_max = nan\n"}, ["devices", "{d}/p.toml"], "w_max"),
    ("profile-resistive-bits", {"p.toml": PROFILE + "[resistive]\nbits = -3\n"}, ["devices", "{d}/p.toml"], "bits"),
    ("profile-resistive-gmin-gmax", {"p.toml": PROFILE + "[resistive]\ng_min_s = 1e-3\ng_max_s = 1e-6\n"},
     ["devices", "{d}/p.toml"], "g_m"),
    ("profile-resistive-noise-list", {"p.toml": PROFILE + "[resistive]\nprog_noise = \"big\"\n"},
     ["devices", "{d}/p.toml"], "prog_noise"),
    ("profile-missing", {}, ["devices", "{d}/nope.toml"], "nope.toml"),
    ("profile-folder-empty", {"empty": None}, ["devices", "{d}/empty"], "empty"),
    ("profile-folder-junk", {"f": None, "f/a.toml": JUNK}, ["devices", "{d}/f"], "a.toml"),
    # --- circuit specs (anasim lipschitz, before any relaxation) ---
    ("circuit-missing", {}, ["lipschitz", "{d}/nope.toml"], "nope.toml"),
    ("circuit-dir", {"c.toml": None}, ["lipschitz", "{d}/c.toml"], "c.toml"),
    ("circuit-junk", {"c.toml": JUNK}, ["lipschitz", "{d}/c.toml"], "c.toml"),
    ("circuit-latin1", {"c.toml": b"name = \"\xe9\"\n" + NET.encode()}, ["lipschitz", "{d}/c.toml"], "c.toml"),
    ("circuit-bad-toml", {"c.toml": "[network\nsizes = [4"}, ["lipschitz", "{d}/c.toml"], "c.toml"),
    ("circuit-empty", {"c.toml": ""}, ["lipschitz", "{d}/c.toml"], "c.toml"),
    ("circuit-unknown-key", {"c.toml": NET + "bogus = 1\n"}, ["lipschitz", "{d}/c.toml"], "bogus"),
    ("circuit-unknown-table", {"c.toml": NET + "[bogus]\n"}, ["lipschitz", "{d}/c.toml"], "bogus"),
    ("circuit-sizes-type", {"c.toml": "[network]\nsizes = \"abc\"\n"}, ["lipschitz", "{d}/c.toml"], "sizes"),
    ("circuit-sizes-one", {"c.toml": "[network]\nsizes = [4]\n"}, ["lipschitz", "{d}/c.toml"], "sizes"),
    ("circuit-sizes-zero", {"c.toml": "[network]\nsizes = [4, 0, 2]\n"}, ["lipschitz", "{d}/c.toml"], "sizes"),
    ("circuit-sizes-float", {"c.toml": "[network]\nsizes = [4.5, 3, 2]\n"}, ["lipschitz", "{d}/c.toml"], "sizes"),
    ("circuit-sizes-huge", {"c.toml": "[network]\nsizes = [4, 100000000000, 2]\n"},
     ["lipschitz", "{d}/c.toml"], "sizes"),
    ("circuit-lam-nan", {"c.toml": "[network]\nsizes = [4, 3, 2]\nlam = nan\n"}, ["lipschitz", "{d}/c.toml"], "lam"),
    ("circuit-lam-range", {"c.toml": "[network]\nsizes = [4, 3, 2]\nlam = 7.0\n"}, ["lipschitz", "{d}/c.toml"], "lam"),
    ("circuit-activation", {"c.toml": NET + "activation = \"bogus\"\n"}, ["lipschitz", "{d}/c.toml"], "activation"),
    ("circuit-eta", {"c.toml": NET + "[relaxation]\neta = -0.5\n"}, ["lipschitz", "{d}/c.toml"], "eta"),
    ("circuit-max-iters", {"c.toml": NET + "[relaxation]\nmax_iters = 0\n"}, ["lipschitz", "{d}/c.toml"], "max_iters"),
    ("circuit-tol", {"c.toml": NET + "[relaxation]\ntol = -1e-5\n"}, ["lipschitz", "{d}/c.toml"], "tol"),
    ("circuit-schedule", {"c.toml": NET + "[relaxation]\nschedule = \"bogus\"\n"}, ["lipschitz", "{d}/c.toml"],
     "schedule"),
    ("circuit-training-key", {"c.toml": NET + "[training]\nbogus = 1\n"}, ["lipschitz", "{d}/c.toml"], "bogus"),
    ("circuit-device-missing", {"c.toml": "device = \"nope.toml\"\n" + NET}, ["lipschitz", "{d}/c.toml"], "nope.toml"),
    ("circuit-device-dir", {"c.toml": "device = \"dev\"\n" + NET, "dev": None}, ["lipschitz", "{d}/c.toml"], "dev"),
    ("device-flag-missing", {"c.toml": NET}, ["lipschitz", "{d}/c.toml", "--device", "{d}/nope.toml"], "nope.toml"),
    ("device-flag-junk", {"c.toml": NET, "p.toml": JUNK}, ["lipschitz", "{d}/c.toml", "--device", "{d}/p.toml"],
     "p.toml"),
    ("lipschitz-pairs", {"c.toml": NET}, ["lipschitz", "{d}/c.toml", "--pairs", "-1"], "--pairs"),
    ("lipschitz-ascent", {"c.toml": NET}, ["lipschitz", "{d}/c.toml", "--ascent-steps", "-2"], "--ascent-steps"),
    ("lipschitz-trained-missing", {"c.toml": NET}, ["lipschitz", "{d}/c.toml", "--trained", "{d}/nope.nc"],
     "nope.nc"),
    ("lipschitz-trained-junk", {"c.toml": NET, "run.ckpt.h5": JUNK},
     ["lipschitz", "{d}/c.toml", "--trained", "{d}/run.ckpt.h5"], "run.ckpt.h5"),
    # --- training flags and the training table ---
    ("train-epochs-zero", {"c.toml": NET}, ["train", "--circuit", "{d}/c.toml", "--out", "{d}/r.nc", "--epochs", "0"],
     "--epochs"),
    ("train-epochs-text", {"c.toml": NET}, ["train", "--circuit", "{d}/c.toml", "--epochs", "abc"], "--epochs"),
    ("train-lr-nan", {"c.toml": NET}, ["train", "--circuit", "{d}/c.toml", "--out", "{d}/r.nc", "--lr", "nan"], "--lr"),
    ("train-lr-negative", {"c.toml": NET}, ["train", "--circuit", "{d}/c.toml", "--out", "{d}/r.nc", "--lr", "-1"],
     "--lr"),
    ("train-beta-inf", {"c.toml": NET}, ["train", "--circuit", "{d}/c.toml", "--out", "{d}/r.nc", "--beta", "inf"],
     "--beta"),
    ("train-batch-zero", {"c.toml": NET},
     ["train", "--circuit", "{d}/c.toml", "--out", "{d}/r.nc", "--batch-size", "0"], "--batch-size"),
    ("train-train-size", {"c.toml": NET},
     ["train", "--circuit", "{d}/c.toml", "--out", "{d}/r.nc", "--train-size", "-5"], "--train-size"),
    ("train-rule", {"c.toml": NET}, ["train", "--circuit", "{d}/c.toml", "--out", "{d}/r.nc", "--rule", "bogus"],
     "rule"),
    ("train-write-mode", {"c.toml": NET},
     ["train", "--circuit", "{d}/c.toml", "--out", "{d}/r.nc", "--write-mode", "bogus"], "write_mode"),
    ("train-phases", {"c.toml": NET}, ["train", "--circuit", "{d}/c.toml", "--out", "{d}/r.nc", "--phases", "x"],
     "phases"),
    ("train-data-missing", {"c.toml": NET},
     ["train", "--circuit", "{d}/c.toml", "--out", "{d}/r.nc", "--data", "{d}/nodata"], "nodata"),
    ("train-out-dir", {"c.toml": NET, "o": None}, ["train", "--circuit", "{d}/c.toml", "--out", "{d}/o"], "--out"),
    ("train-out-under-file", {"c.toml": NET, "f.txt": "x"},
     ["train", "--circuit", "{d}/c.toml", "--out", "{d}/f.txt/r.nc"], "--out"),
    ("train-out-foreign", {"c.toml": NET, "r.nc": "not a run"},
     ["train", "--circuit", "{d}/c.toml", "--out", "{d}/r.nc"], "--out"),
    ("train-resume-overwrite", {"c.toml": NET},
     ["train", "--circuit", "{d}/c.toml", "--out", "{d}/r.nc", "--resume", "--overwrite"], "--resume"),
    ("train-no-circuit", {}, ["train", "--epochs", "1"], "--circuit"),
    ("train-epochs-table", {"c.toml": NET + "[training]\nepochs = -1\n"},
     ["train", "--circuit", "{d}/c.toml", "--out", "{d}/r.nc"], "epochs"),
    ("train-lr-table", {"c.toml": NET + "[training]\nlearning_rate = nan\n"},
     ["train", "--circuit", "{d}/c.toml", "--out", "{d}/r.nc"], "learning_rate"),
    ("train-checkpoint-steps", {"c.toml": NET},
     ["train", "--circuit", "{d}/c.toml", "--out", "{d}/r.nc", "--checkpoint-every-steps", "-1"],
     "checkpoint_every_steps"),
    ("train-checkpoint-s-table", {"c.toml": NET + "[training]\ncheckpoint_every_s = nan\n"},
     ["train", "--circuit", "{d}/c.toml", "--out", "{d}/r.nc"], "checkpoint_every_s"),
    ("train-batch-table", {"c.toml": NET + "[training]\nbatch_size = \"16\"\n"},
     ["train", "--circuit", "{d}/c.toml", "--out", "{d}/r.nc"], "batch_size"),
    # --- sweep specs (anasim sweep --dry-run) ---
    ("sweep-missing", {}, ["sweep", "{d}/s.toml", "--dry-run"], "s.toml"),
    ("sweep-dir", {"s.toml": None}, ["sweep", "{d}/s.toml", "--dry-run"], "s.toml"),
    ("sweep-junk", {"s.toml": JUNK}, ["sweep", "{d}/s.toml", "--dry-run"], "s.toml"),
    ("sweep-latin1", {"s.toml": b"title = \"\xe9\"\n"}, ["sweep", "{d}/s.toml", "--dry-run"], "s.toml"),
    ("sweep-bad-toml", {"s.toml": "[parameters\nseed = [0"}, ["sweep", "{d}/s.toml", "--dry-run"], "s.toml"),
    ("sweep-empty", {"s.toml": ""}, ["sweep", "{d}/s.toml", "--dry-run"], "s.toml"),
    ("sweep-unknown-key", {"c.toml": NET, "s.toml": sweep("[parameters]\nseed = [0]\n") + "bogus = 1\n"},
     ["sweep", "{d}/s.toml", "--dry-run"], "bogus"),
    ("sweep-unknown-param", {"c.toml": NET, "s.toml": sweep("[parameters]\n\"bogus.x\" = [1, 2]\n")},
     ["sweep", "{d}/s.toml", "--dry-run"], "bogus.x"),
    ("sweep-param-not-list", {"c.toml": NET, "s.toml": sweep("[parameters]\nseed = 3\n")},
     ["sweep", "{d}/s.toml", "--dry-run"], "seed"),
    ("sweep-param-empty", {"c.toml": NET, "s.toml": sweep("[parameters]\nseed = []\n")},
     ["sweep", "{d}/s.toml", "--dry-run"], "seed"),
    ("sweep-param-nan", {"c.toml": NET, "s.toml": sweep("[parameters]\n\"rule.beta\" = [0.1, nan]\n")},
     ["sweep", "{d}/s.toml", "--dry-run"], "rule.beta"),
    ("sweep-measurement", {"c.toml": NET, "s.toml": sweep("[parameters]\nseed = [0]\n").replace("train", "bogus")},
     ["sweep", "{d}/s.toml", "--dry-run"], "bogus"),
    ("sweep-base-missing", {"s.toml": sweep("[parameters]\nseed = [0]\n")}, ["sweep", "{d}/s.toml", "--dry-run"],
     "c.toml"),
    ("sweep-base-junk", {"c.toml": JUNK, "s.toml": sweep("[parameters]\nseed = [0]\n")},
     ["sweep", "{d}/s.toml", "--dry-run"], "c.toml"),
    ("sweep-fixed-type", {"c.toml": NET, "s.toml": sweep("[fixed]\n\"train.epochs\" = \"two\"\n[parameters]\nseed = [0]\n")},
     ["sweep", "{d}/s.toml", "--dry-run"], "s.toml: key 'fixed.\"circuit.training.epochs\"' = 'two'"),
    ("sweep-fixed-float-type", {"c.toml": NET, "s.toml": sweep(
        "[fixed]\n\"circuit.training.learning_rate\" = \"fast\"\n[parameters]\nseed = [0, 1]\n")},
     ["sweep", "{d}/s.toml", "--dry-run"], "key 'fixed.\"circuit.training.learning_rate\"' = 'fast'"),
    ("sweep-workers", {"c.toml": NET, "s.toml": sweep("[parameters]\nseed = [0]\n")},
     ["sweep", "{d}/s.toml", "--workers", "0"], "--workers"),
    ("sweep-out-dir", {"c.toml": NET, "s.toml": sweep("[parameters]\nseed = [0]\n"), "o": None},
     ["sweep", "{d}/s.toml", "--out", "{d}/o"], "--out"),
    # --- netlists (anasim op) ---
    ("netlist-missing", {}, ["op", "{d}/n.cir"], "n.cir"),
    ("netlist-dir", {"n.cir": None}, ["op", "{d}/n.cir"], "n.cir"),
    ("netlist-junk", {"n.cir": JUNK}, ["op", "{d}/n.cir"], "n.cir"),
    ("netlist-latin1", {"n.cir": b"t\nR\xe9 a 0 1k\n.end\n"}, ["op", "{d}/n.cir"], "n.cir"),
    ("netlist-empty", {"n.cir": ""}, ["op", "{d}/n.cir"], "n.cir"),
    ("netlist-title-only", {"n.cir": "t\n.end\n"}, ["op", "{d}/n.cir"], "n.cir"),
    ("netlist-number", {"n.cir": "t\nR1 a 0 abc\n.end\n"}, ["op", "{d}/n.cir"], "n.cir:line 2"),
    ("netlist-nan", {"n.cir": "t\nV1 a 0 nan\nR1 a 0 1k\n.end\n"}, ["op", "{d}/n.cir"], "n.cir:line 2"),
    ("netlist-huge", {"n.cir": "t\nV1 a 0 1e999\nR1 a 0 1k\n.end\n"}, ["op", "{d}/n.cir"], "n.cir:line 2"),
    ("netlist-gmin", {"n.cir": "t\nV1 a 0 1\nR1 a 0 1k\n.options gmin=-1\n.end\n"}, ["op", "{d}/n.cir"], "gmin"),
    ("netlist-floating", {"n.cir": "t\nV1 a 0 1\nR1 a 0 1k\nC1 a b 1p\n.end\n"}, ["op", "{d}/n.cir"], "'b'"),
    ("netlist-no-ground", {"n.cir": "t\nV1 a b 1\nR1 a b 1k\n.end\n"}, ["op", "{d}/n.cir"], "no ground"),
    ("netlist-v-loop", {"n.cir": "t\nV1 a 0 1\nV2 a 0 2\nR1 a 0 1\n.end\n"}, ["op", "{d}/n.cir"], "v2"),
    ("netlist-open-isource", {"n.cir": "t\nR1 a 0 1\nI1 0 b 1m\n.end\n"}, ["op", "{d}/n.cir"], "i1"),
    ("netlist-model-missing", {"n.cir": "t\nI1 0 a 1m\nD1 a 0 dm\n.end\n"}, ["op", "{d}/n.cir"], "dm"),
    ("netlist-model-n", {"n.cir": "t\nI1 0 a 1m\nD1 a 0 dm\n.model dm D(IS=1e-14 N=nan)\n.end\n"},
     ["op", "{d}/n.cir"], "n.cir:line 4"),
    ("netlist-short-v", {"n.cir": "t\nV1 a a 1\nR1 a 0 1\n.end\n"}, ["op", "{d}/n.cir"], "V1"),
    ("op-max-iter", {"n.cir": NETLIST_OK}, ["op", "{d}/n.cir", "--max-iter", "0"], "--max-iter"),
    ("op-method", {"n.cir": NETLIST_OK}, ["op", "{d}/n.cir", "--method", "bogus"], "--method"),
    # --- result files (anasim report) ---
    ("report-missing", {}, ["report", "{d}/r.nc"], "r.nc"),
    ("report-dir", {"r.nc": None}, ["report", "{d}/r.nc"], "r.nc"),
    ("report-junk", {"r.nc": JUNK}, ["report", "{d}/r.nc"], "r.nc"),
    ("report-text", {"r.nc": "hello\n"}, ["report", "{d}/r.nc"], "r.nc"),
    # --- the command line itself ---
    ("cli-unknown-command", {}, ["bogus"], "bogus"),
    ("cli-no-command", {}, [], "command"),
    ("cli-unknown-flag", {"n.cir": NETLIST_OK}, ["op", "{d}/n.cir", "--bogus"], "--bogus"),
]


def _materialize(tmp_path, files):
    for name, content in files.items():
        p = tmp_path / name
        if content is None:
            p.mkdir(parents=True, exist_ok=True)
        elif isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content)


@pytest.mark.parametrize("files,argv,names", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_input_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys, files, argv, names):
    _materialize(tmp_path, files)
    monkeypatch.chdir(tmp_path)
    try:
        code = main([a.format(d=tmp_path) for a in argv])
    except SystemExit as exc:   # argparse
        code = exc.code
    out = capsys.readouterr()
    lines = out.err.splitlines()
    assert code == 2, (code, out.err)
    assert "Traceback" not in out.err + out.out
    assert len(lines) == 1, out.err
    assert names in lines[0], lines[0]
    assert lines[0].startswith("anasim"), lines[0]


def test_the_table_is_large():
    assert len(CASES) >= 60
    assert len({c[0] for c in CASES}) == len(CASES)
