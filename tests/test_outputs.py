"""Output paths: finished work is never destroyed, bad paths fail before any work,
failed writes name the file, divergence stops a run with its own exit code."""

import errno
import os
import subprocess
import sys
import time

import h5py
import pytest

from anasim.cli import main

SMALL = """name = "small"
[network]
sizes = [784, 8, 10]
lam = 1.0
[relaxation]
max_iters = 50
[training]
epochs = 2
batch_size = 32
train_size = 64
test_size = 32
data = "subset"
"""


@pytest.fixture
def circuit(tmp_path):
    path = tmp_path / "small.toml"
    path.write_text(SMALL)
    return str(path)


def _one_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


@pytest.mark.parametrize("make, message", [
    (lambda d: (d / "f").write_text("x") and d / "f" / "run.nc", "is a file, not a directory"),
    (lambda d: d, "is a directory, a file path is needed"),
    (lambda d: "/sys/anasim-run.nc", "cannot write in directory /sys"),
])
def test_bad_output_paths_fail_at_once(tmp_path, circuit, capsys, make, message):
    out = str(make(tmp_path))
    t0 = time.perf_counter()
    assert main(["train", "--circuit", circuit, "--out", out]) == 2
    assert time.perf_counter() - t0 < 2.0
    line = _one_line(capsys)
    assert message in line and "--out" in line


def test_bad_plot_and_report_paths_fail_at_once(tmp_path, circuit, capsys):
    (tmp_path / "f").write_text("x")
    assert main(["train", "--circuit", circuit, "--out", str(tmp_path / "r.nc"),
                 "--plot", str(tmp_path / "f" / "c.png")]) == 2
    assert "--plot" in _one_line(capsys)
    assert not (tmp_path / "r.nc").exists()
    assert main(["report", str(tmp_path / "f"), "--out", str(tmp_path)]) == 2
    assert "is a directory" in _one_line(capsys)


def test_lr_inf_and_nan_are_blamed_on_the_flag(circuit, tmp_path, capsys):
    for flag, value in (("--lr", "inf"), ("--lr", "nan"), ("--beta", "inf")):
        assert main(["train", "--circuit", circuit, "--out", str(tmp_path / "r.nc"), flag, value]) == 2
        line = _one_line(capsys)
        assert line.startswith(f"anasim train: error: {flag}: expected a finite number > 0")
        assert "small.toml" not in line


def test_a_file_that_is_not_a_run_is_never_overwritten(tmp_path, circuit, capsys):
    other = tmp_path / "notes.nc"
    other.write_text("my notes")
    for extra in ([], ["--overwrite"]):
        assert main(["train", "--circuit", circuit, "--out", str(other), *extra]) == 2
        line = _one_line(capsys)
        assert f"--out {other}: exists and is not an anasim run" in line
    assert other.read_text() == "my notes"
    assert main(["sweep", "x.toml", "--resume", "--overwrite"]) == 2   # spec read first: names the file
    capsys.readouterr()


@pytest.mark.slow
def test_a_finished_run_needs_resume_or_overwrite(tmp_path, circuit, capsys):
    out = tmp_path / "run.nc"
    assert main(["train", "--circuit", circuit, "--out", str(out), "--epochs", "1", "--no-progress"]) == 0
    capsys.readouterr()
    before = out.read_bytes()
    assert main(["train", "--circuit", circuit, "--out", str(out)]) == 2
    line = _one_line(capsys)
    assert f"--out {out} already holds a run" in line and "--resume" in line and "--overwrite" in line
    assert out.read_bytes() == before
    assert main(["train", "--circuit", circuit, "--out", str(out), "--resume", "--overwrite"]) == 2
    assert "exclude each other" in _one_line(capsys)
    torn = [tmp_path / ".run.nc.4999999.k3x9.tmp", tmp_path / ".run.ckpt.h5.4999999.q7w2.tmp"]   # writes killed midway
    for t in torn:
        t.write_bytes(b"torn")
    assert main(["train", "--circuit", circuit, "--out", str(out), "--resume", "--epochs", "1"]) == 0
    assert "(resumed; 1 epochs in" in capsys.readouterr().out
    assert not any(t.exists() for t in torn)
    assert main(["train", "--circuit", circuit, "--out", str(out), "--overwrite", "--epochs", "2"]) == 0
    with h5py.File(out, "r") as f:
        assert f["epoch"].shape == (2,)


@pytest.mark.slow
def test_a_failed_write_names_the_file_and_keeps_the_last_checkpoint(tmp_path, circuit, capsys, monkeypatch):
    import anasim.learning.controller as controller

    out = tmp_path / "run.nc"
    real = controller.write_history
    calls = []

    def full_disk(path, *a, **k):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, *a, **k)

    monkeypatch.setattr(controller, "write_history", full_disk)
    # checkpoints at epochs' ends only: the second result write is the one after epoch 2
    code = main(["train", "--circuit", circuit, "--out", str(out), "--epochs", "2", "--no-progress",
                 "--checkpoint-every-s", "0"])
    assert code == 4
    line = _one_line(capsys)
    assert f"{out}: write failed at epoch 2 (No space left on device)" in line
    ckpt = tmp_path / "run.ckpt.h5"
    with h5py.File(ckpt, "r") as f:
        assert int(f.attrs["epoch"]) == 1
    with h5py.File(out, "r") as f:
        assert f["epoch"].shape == (1,)
    assert not list(tmp_path.glob(".*tmp*"))


def test_broken_pipe_ends_quietly(tmp_path):
    # `anasim train --help | head -1`: the reader closes the pipe before all is written
    proc = subprocess.Popen([sys.executable, "-m", "anasim.cli", "devices", "devices"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()   # closed before anything is read
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0
    assert "BrokenPipeError" not in err and "Traceback" not in err and err == ""


def test_version():
    out = subprocess.run([sys.executable, "-m", "anasim.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("anasim ")


def test_sweep_out_needs_resume_or_overwrite(tmp_path, capsys):
    import json

    f = tmp_path / "ok.toml"
    f.write_text('measurement = "synthetic"\n[parameters]\nbits = [2, 4]\n')
    out = tmp_path / "ok.nc"
    assert main(["sweep", str(f), "--out", str(out), "--json"]) == 0
    capsys.readouterr()
    assert main(["sweep", str(f), "--out", str(out), "--json"]) == 2
    line = _one_line(capsys)
    assert f"--out {out} already holds a run; pass --resume" in line and "--overwrite" in line
    assert main(["sweep", str(f), "--out", str(out), "--json", "--resume"]) == 0
    assert json.loads(capsys.readouterr().out)["reused"] == 2
    assert main(["sweep", str(f), "--out", str(out), "--json", "--overwrite"]) == 0
    assert json.loads(capsys.readouterr().out)["computed"] == 2
    # a killed sweep leaves only its point store: that is a run too
    out.unlink()
    assert main(["sweep", str(f), "--out", str(out)]) == 2
    assert "ok.nc.points already holds a run" in _one_line(capsys)
    foreign = tmp_path / "paper.nc"
    foreign.write_bytes(b"\x89HDF not really")
    assert main(["sweep", str(f), "--out", str(foreign), "--overwrite"]) == 2
    assert "is not an anasim run" in _one_line(capsys)
    assert foreign.read_bytes() == b"\x89HDF not really"
    assert main(["sweep", str(f), "--out", str(tmp_path / "ok.toml" / "x.nc")]) == 2
    assert "is a file, not a directory" in _one_line(capsys)


def test_circuit_widths_must_fit_the_data(tmp_path, capsys):
    for sizes, key in (("[784, 8, 4]", "network.sizes[-1] = 4 output units but the data have 10 classes"),
                       ("[100, 8, 10]", "network.sizes[0] = 100 but the data have 784 inputs")):
        path = tmp_path / "w.toml"
        path.write_text(SMALL.replace("[784, 8, 10]", sizes))
        assert main(["train", "--circuit", str(path), "--out", str(tmp_path / "r.nc")]) == 2
        line = _one_line(capsys)
        assert str(path) in line and key in line
    assert not (tmp_path / "r.nc").exists()


def test_empty_device_profile_is_an_error(tmp_path, capsys):
    (tmp_path / "empty.toml").write_text("# nothing here\n")
    assert main(["devices", str(tmp_path / "empty.toml")]) == 2
    assert "empty.toml: empty device profile" in _one_line(capsys)


def _fake_run(path, kind="train"):
    with h5py.File(path, "w") as f:
        f.attrs["anasim.kind"] = kind


def test_temporaries_of_an_interrupted_write_are_removed_when_the_run_starts_again(tmp_path):
    from anasim.outputs import claim_run, sibling_checkpoint, stale_temporaries

    out = tmp_path / "run.nc"
    _fake_run(out)
    ckpt = sibling_checkpoint(out)
    _fake_run(ckpt)
    stale = [tmp_path / ".run.nc.tmp4999999", tmp_path / ".run.ckpt.h5.tmp4999999",
             tmp_path / ".run.nc.4999999.k3x9.tmp", tmp_path / ".run.nc.k3x9.tmp"]
    keep = [tmp_path / ".other.nc.tmp4999999", tmp_path / "notes.tmp", tmp_path / "run.nc.tmp",
            tmp_path / f".run.nc.tmp{os.getpid()}"]   # the last: a writer still running
    for f in stale + keep:
        f.write_bytes(b"half a file")
    assert stale_temporaries(out, [ckpt]) == sorted(stale)
    with pytest.raises(Exception, match="already holds a run"):   # refused: nothing touched
        claim_run(out, "train", [ckpt], resume=False, overwrite=False)
    assert all(f.exists() for f in stale)
    claim_run(out, "train", [ckpt], resume=True, overwrite=False)
    assert not any(f.exists() for f in stale)
    assert all(f.exists() for f in keep) and out.exists() and ckpt.exists()


def test_sweep_store_temporaries_are_removed_on_resume(tmp_path):
    from anasim.outputs import claim_run

    out = tmp_path / "s.nc"
    _fake_run(out, "sweep")
    store = tmp_path / "s.nc.points"
    store.mkdir()
    (store / "abc.h5").write_bytes(b"a point")
    tmps = [store / ".abc.4999999.q1w2.tmp", tmp_path / ".s.nc.4999999.e4r5.tmp"]
    for f in tmps:
        f.write_bytes(b"half")
    claim_run(out, "sweep", [store], resume=True, overwrite=False)
    assert not any(f.exists() for f in tmps) and (store / "abc.h5").exists()


@pytest.mark.slow
def test_sweep_resume_through_the_cli_removes_temporaries(tmp_path, capsys):
    import json

    f = tmp_path / "ok.toml"
    f.write_text('measurement = "synthetic"\n[parameters]\nbits = [2, 4]\n')
    out = tmp_path / "ok.nc"
    assert main(["sweep", str(f), "--out", str(out), "--json"]) == 0
    capsys.readouterr()
    tmps = [tmp_path / "ok.nc.points" / ".deadbeef.4999999.x1.tmp", tmp_path / ".ok.nc.4999999.y2.tmp"]
    for t in tmps:
        t.write_bytes(b"torn")
    assert main(["sweep", str(f), "--out", str(out), "--json", "--resume"]) == 0
    assert json.loads(capsys.readouterr().out)["reused"] == 2
    assert not any(t.exists() for t in tmps)
