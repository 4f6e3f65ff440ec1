"""The console script as a user meets it: --help everywhere, clear one-line errors."""

import os
import subprocess
import sys

import pytest

from ganvirt.cli import main

COMMANDS = ["run", "datasets", "pull", "sample", "publish", "up"]


def ganvirt(*args, **kw):
    return subprocess.run([sys.executable, "-m", "ganvirt.cli", *args], capture_output=True, text=True,
                          timeout=120, **kw)


def test_help_lists_commands():
    out = ganvirt("--help")
    assert out.returncode == 0
    for cmd in COMMANDS:
        assert cmd in out.stdout


@pytest.mark.parametrize("cmd", COMMANDS)
def test_help_on_every_command(cmd, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([cmd, "--help"])
    assert exit_.value.code == 0 and "usage: ganvirt" in capsys.readouterr().out


@pytest.mark.parametrize("args,message", [
    (["run", "--name", "../etc"], "dataset name '../etc'"),
    (["run", "--steps", "0"], "--steps 0 (train.steps): Input should be greater than or equal to 1"),
    (["run", "--augment", "rotate"], "--augment 'rotate' (train.augment): Value error, unknown augmentation 'rotate'"),
    (["run", "--gate", "max_fid=2"], "--gate max_fid=2 (gate.max_fid): not a gate field; choose from ['max_fid_ratio', "),
    (["run", "--gate", "min_recall=2"], "--gate min_recall=2 (gate.min_recall): Input should be less than or equal to 1"),
    (["run", "--eval-samples", "3"], "--eval-samples 3 (evaluation.num_samples): Input should be greater than or equal to 10"),
    (["pull", "nothing-here", "--to", "/tmp/x"], "no published dataset 'nothing-here'"),
    (["datasets", "nothing-here"], "no published dataset 'nothing-here'"),
    (["run", "--model", "dcgn"], "--model 'dcgn': unknown model 'dcgn'; choose from ['dcgan', 'mlp']"),
    (["run", "--model", "dcgan", "--hidden", "32"], "--hidden 32 (train.hidden): not a setting of --model dcgan"),
    (["sample", "nosuch", "--out", "/tmp/x.npz"], "dataset 'nosuch' has no generator in the MLflow registry"),
    (["publish", "nosuch"], "run 'ganvirt run --source SOURCE --name nosuch' first"),
])
def test_errors_are_one_line(args, message, capsys):
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    lines = [line for line in err.splitlines() if line.startswith("ganvirt: error:")]
    assert len(lines) == 1 and message in lines[0], err  # (MLflow's own INFO lines may precede it)


def test_unwritable_home(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")  # even root cannot create a folder under a file
    out = ganvirt("datasets", env={"GANVIRT_HOME": str(blocker / "home"), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 1
    assert out.stderr.startswith("ganvirt: error: GANVIRT_HOME=") and "not writable" in out.stderr


def test_missing_local_source_is_refused_before_any_store_starts(tmp_path):
    home = tmp_path / "home"
    out = ganvirt("run", "--source", str(tmp_path / "nope"), env={**os.environ, "GANVIRT_HOME": str(home)})
    assert out.returncode == 1 and out.stderr.strip().count("\n") == 0, out.stderr
    assert out.stderr.startswith(f"ganvirt: error: source '{tmp_path / 'nope'}': no such file or folder")
    assert not (home / "mlflow.db").exists() and not (home / "prefect").exists()  # no store was started


def test_up_refuses_a_taken_port(capsys):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["up", "--prefect-port", str(port), "--mlflow-port", "1"]) == 1
    err = capsys.readouterr().err
    assert f"--prefect-port {port}: 127.0.0.1:{port} is already in use" in err


def test_every_parameter_has_its_flag():
    """``run``'s flags are the flow's parameters: each field has a flag whose help is the field's
    description and default, and a flag left out leaves the model's own default (per-model
    ones included)."""
    import argparse

    from flows.params import VirtualizeParams
    from ganvirt import flags

    parser = argparse.ArgumentParser(  # one line per flag
        formatter_class=lambda prog: argparse.HelpFormatter(prog, max_help_position=200, width=100_000))
    flags.add_model(parser, VirtualizeParams)
    lines = parser.format_help().splitlines()
    fields = [("", f, i) for f, i in VirtualizeParams.model_fields.items() if f not in (*flags.SECTIONS, "gate")]
    fields += [(section, f, i) for section in flags.SECTIONS
               for model in flags.members(VirtualizeParams.model_fields[section].annotation)
               for f, i in model.model_fields.items() if f != flags.UNION_TAG]
    assert len(fields) > 20
    model_line = next(x for x in lines if x.strip().startswith("--model "))
    assert "mlp (the seed GAN)" in model_line and "dcgan (conditional conv GAN)" in model_line
    lr_line = next(x for x in lines if x.strip().startswith("--lr "))
    assert "(default: 0.0002 (mlp) / 0.0008 (dcgan))" in lr_line
    for section, field, info in fields:
        flag = flags.flag_names(section, field)[-1]
        line = next(x for x in lines if x.strip().startswith((flag + " ", flag + ",")) or f", {flag} " in x)
        assert info.description in line, (flag, line)
        assert "default" in line or info.default is None, (flag, line)
    args = parser.parse_args(["--model", "dcgan", "--eval-samples", "500", "-n", "7"])
    p = VirtualizeParams(**flags.values(args, VirtualizeParams))
    assert (p.train.batch_size, p.train.probe_every, p.train.mode_seeking) == (64, 1_000, 0.1)  # dcgan's own
    assert (p.evaluation.num_samples, p.publication.n, p.holdout) == (500, 7, 0.2)
    assert p == VirtualizeParams(train={"model": "dcgan"}, evaluation={"num_samples": 500}, publication={"n": 7})
