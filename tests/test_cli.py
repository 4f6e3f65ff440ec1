"""The console script as a user meets it: --help everywhere, clear one-line errors."""

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
    (["run", "--steps", "0"], "TrainParams.steps=0: Input should be greater than or equal to 1"),
    (["run", "--augment", "rotate"], "TrainParams.augment='rotate': Value error, unknown augmentation 'rotate'"),
    (["pull", "nothing-here", "--to", "/tmp/x"], "no published dataset 'nothing-here'"),
    (["datasets", "nothing-here"], "no published dataset 'nothing-here'"),
])
def test_errors_are_one_line(args, message, capsys):
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("ganvirt: error:") and message in err and "\n" not in err


def test_unwritable_home(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")  # even root cannot create a folder under a file
    out = ganvirt("datasets", env={"GANVIRT_HOME": str(blocker / "home"), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 1
    assert out.stderr.startswith("ganvirt: error: GANVIRT_HOME=") and "not writable" in out.stderr


def test_up_refuses_a_taken_port(capsys):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["up", "--prefect-port", str(port), "--mlflow-port", "1"]) == 1
    err = capsys.readouterr().err
    assert f"--prefect-port {port}: 127.0.0.1:{port} is already in use" in err


def test_run_defaults_match_the_library():
    """The CLI keeps torch off its start-up path, so it spells some defaults out: they must agree."""
    from flows.params import EvalParams
    from gan.features import ClassifierConfig
    from ganvirt.cli import build_parser

    args = build_parser().parse_args(["run"])
    assert args.classifier_steps == ClassifierConfig.steps == EvalParams().classifier_steps
    assert args.eval_samples == EvalParams().num_samples
