import subprocess
import sys
from pathlib import Path

from ganaug.pipeline.plumbing.cli import main
from ganaug.pipeline.filter import ACCEPT_ALL
from ganaug.pipeline.plumbing.params import as_overrides
from ganaug.pipeline.store.manifest import read_manifest

TINY = ["--set", "demo.size=8", "--set", "ingest.size=8", "--set", "train.steps=20", "--set", "train.width=8",
        "--set", "train.z_dim=16", "--set", "train.batch_size=16", "--set", "evaluate.epochs=1",
        "--set", "evaluate.repeats=1", "--set", "evaluate.width=8", "--set", "evaluate.arm_classifier.epochs=1",
        "--set", "evaluate.arm_classifier.width=8", "--set", "evaluate.arm_classifier.min_steps=1",
        # Mechanics, not quality: a 20-step GAN's images would (rightly) meet closed guards and gate.
        *[a for s in [*as_overrides({"filter": ACCEPT_ALL}), 'evaluate.min_gain=null', 'evaluate.synthetic_shares=[1.0]'] for a in ("--set", s)]]


def test_run_demo_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no params.yaml here: defaults, relative paths under tmp
    assert main(["run", "--demo", *TINY]) == 0
    out = capsys.readouterr().out
    for stage in ("demo-data", "ingest", "train", "generate", "filter", "evaluate", "append"):
        assert f"[{stage}]" in out
    aug = read_manifest(tmp_path / "data/augmented", check_files=True)
    assert (aug["source"] == "synthetic").any()
    assert (tmp_path / "reports/metrics.json").is_file()
    assert (tmp_path / "reports/train/samples.png").is_file()
    # A stage alone, again: append finds the set up to date.
    assert main(["append", *TINY]) == 0
    assert "already up to date" in capsys.readouterr().out


def test_bad_override_is_one_clear_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["ingest", "--set", "ingest.sise=8"]) == 2
    err = capsys.readouterr().err
    assert "ganaug ingest: error: invalid params" in err and "ingest.sise: unknown key" in err
    assert "Traceback" not in err


def test_stage_error_is_one_clear_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["generate"]) == 2
    assert "data/prepared/manifest.parquet: no manifest here" in capsys.readouterr().err


def test_console_script_and_params_command(tmp_path):
    exe = Path(sys.executable).with_name("ganaug")
    out = subprocess.run([str(exe), "params", "--set", "train.steps=7"], cwd=tmp_path,
                         capture_output=True, text=True, check=True).stdout
    assert "steps: 7" in out and "sampling_strategy: not majority" in out
