"""Scene validation: one clear line naming file, line, key, expectation; exit code 2 from the CLI."""

import subprocess
import sys
from pathlib import Path

import pytest

from soundscape.cli import main
from soundscape.errors import SceneError
from soundscape.scene import load_scene, parse_scene

from conftest import SCENE

SCENES = sorted(Path(__file__).resolve().parents[2].joinpath("scenes").glob("*.yaml"))


def error_for(text: str) -> str:
    with pytest.raises(SceneError) as exc:
        parse_scene(text, "scenes/x.yaml")
    msg = str(exc.value)
    assert "\n" not in msg, msg
    return msg


def test_shipped_scenes_are_valid():
    assert len(SCENES) >= 6, [p.name for p in SCENES]
    assert any(p.name == "forest.yaml" for p in SCENES)
    for path in SCENES:
        scene = load_scene(path)
        assert scene.layers and scene.negative_prompt


def test_defaults_fill_everything_but_layers():
    scene = parse_scene("name: x\nlayers: {rain: {prompt: rain on a roof}}\n")
    assert scene.generation.chunk_frames == 256 and scene.generation.overlap_frames == 64
    assert scene.generation.steps == 25 and scene.generation.scheduler == "dpmsolver++"
    assert scene.layers["rain"].weight == 1.0
    assert 0 < scene.output.volume <= 1 and scene.output.sample_rate == 48000


BAD = [
    # (replace this, with this, expected message)
    ("weight: 0.8", 'weight: "loud"', 'scenes/x.yaml:5: layers.birds.weight: expected a number from 0 to 1, got "loud"'),
    ("weight: 0.8", "weight: 2", "scenes/x.yaml:5: layers.birds.weight: expected a number from 0 to 1, got 2"),
    ("{prompt: birds", "{promt: birds", "scenes/x.yaml:5: layers.birds.promt: unknown key 'promt'; did you mean 'prompt'?"),
    ("seed: 7", "sed: 7", "scenes/x.yaml:2: sed: unknown key 'sed'; did you mean 'seed'?"),
    ("steps: 3", "steps: 2.5", "scenes/x.yaml:7: generation.steps: expected a whole number from 1 to 500, got 2.5"),
    ("overlap_seconds: 0.64", "overlap_seconds: 2.56",
     "scenes/x.yaml:7: generation.overlap_seconds: expected at most half of chunk_seconds (1.28), got 2.56"),
    ("chunk_seconds: 2.56", "chunk_seconds: 3",
     "scenes/x.yaml:7: generation.chunk_seconds: expected a multiple of 0.32 s (e.g. 5.12 or 10.24), got 3"),
    ("sample_rate: 48000", "sample_rate: 12345",
     "scenes/x.yaml:9: output.sample_rate: expected 16000, 22050, 24000, 32000, 44100, 48000, 88200 or 96000, got 12345"),
    ("{prompt: a stream of water, weight: 0.4}", "{prompt: '', weight: 0.4}",
     'scenes/x.yaml:6: layers.stream.prompt: expected a non-empty description of the sound, got ""'),
]


@pytest.mark.parametrize("old,new,expected", BAD)
def test_bad_values_give_one_exact_line(old, new, expected):
    assert old in SCENE
    assert error_for(SCENE.replace(old, new, 1)) == expected


def test_cross_field_checks():
    keyframes = ("evolution: {keyframes: [{at: 60, weights: {birds: 0.5}}, {at: 30, weights: {birds: 1}}]}")
    msg = error_for(SCENE.replace("evolution: {drift: {depth: 0.1, period_seconds: 20}}", keyframes))
    assert "evolution.keyframes.1.at: expected times in ascending order, got 30 after 60" in msg
    missing = "evolution: {keyframes: [{at: 0, weights: {owls: 0.5}}]}"
    msg = error_for(SCENE.replace("evolution: {drift: {depth: 0.1, period_seconds: 20}}", missing))
    assert "evolution.keyframes.0.weights.owls: expected one of the layers (birds, stream), got 'owls'" in msg


@pytest.mark.parametrize("budget, expected", [
    ("[{until: 20m, percent: 100}, {until: 10m, percent: 50}, {percent: 15}]",
     "generation.budget.1.until: expected a later time than the step before (1200 s), got 600 s"),
    ("[{percent: 100}, {percent: 15}]", "generation.budget.0.until: expected a play time (like 20m) on every step"),
    ("[{until: 20m, percent: 100}, {until: 1h, percent: 15}]",
     "generation.budget.1.until: expected no until on the last step (it lasts the rest of the night), got 3600"),
    ("[{until: 20m, percent: 0}, {percent: 15}]", "generation.budget.0.percent: expected a number from 1 to 100, got 0"),
    ("[{until: soon, percent: 100}, {percent: 15}]", "generation.budget.0.until: expected seconds as a number or a "
     "duration like 90s or 5m"),
])
def test_a_bad_budget_schedule_names_its_step(budget, expected):
    msg = error_for(SCENE.replace("steps: 3", f"steps: 3, budget: {budget}", 1))
    assert msg.startswith("scenes/x.yaml:7: ") and expected in msg, msg


def test_a_budget_schedule_reads_as_play_seconds():
    scene = parse_scene(SCENE.replace("steps: 3", "steps: 3, budget: [{until: 20m, percent: 100}, {percent: 15}]", 1))
    assert scene.generation.budget_schedule() == ((1200.0, 100.0), (None, 15.0))
    assert parse_scene(SCENE).generation.budget_schedule() == ()  # none: 100 %, or --budget


def test_yaml_problems():
    assert error_for("name: [x\n").startswith("scenes/x.yaml:2: invalid YAML")
    assert "use spaces, not tabs" in error_for("name: x\nlayers:\n\tbirds: {prompt: a}\n")
    assert "duplicate key 'birds' (first at line 3)" in error_for(
        "name: x\nlayers:\n  birds: {prompt: a}\n  birds: {prompt: b}\n")
    assert "expected between 1 and 16 layers" in error_for("name: x\nlayers: {}\n")
    assert "layers: this key is required" in error_for("name: x\n")
    assert "the file is empty" in error_for("")
    bomb = "a: &a [1,1,1,1,1,1,1,1,1]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefg", "bcdefgh"))
    assert "more than 20000 values" in error_for("name: x\n" + bomb)
    assert "expected text in quotes" in error_for(SCENE.replace("birds singing in a forest", "!!binary aGVsbG8="))


def test_file_problems(tmp_path):
    with pytest.raises(SceneError, match="no such file"):
        load_scene(tmp_path / "nope.yaml")
    with pytest.raises(SceneError, match="is a directory"):
        load_scene(tmp_path)
    raw = tmp_path / "latin1.yaml"
    raw.write_bytes(b"name: caf\xe9\nlayers: {a: {prompt: b}}\n")
    with pytest.raises(SceneError, match=r"latin1.yaml:1: the file is not UTF-8"):
        load_scene(raw)
    huge = tmp_path / "huge.yaml"
    huge.write_text("name: x\n" + "#" * 300_000)
    with pytest.raises(SceneError, match="limited to"):
        load_scene(huge)


def test_validate_command_exit_codes(tmp_path, capsys):
    assert main(["validate", *map(str, SCENES)]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(SCENE.replace("weight: 0.8", "weight: 2"))
    assert main(["validate", str(SCENES[0]), str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"{bad}:5: layers.birds.weight: expected a number from 0 to 1, got 2"]


@pytest.mark.parametrize("tagged,line,key,tag", [
    ('name: !!python/object/apply:os.system ["echo hi"]', 1, "name", "!!python/object/apply:os.system"),
    ("name: !!python/name:os.system", 1, "name", "!!python/name:os.system"),
    ("name: !custom x", 1, "name", "!custom"),
    ("name: x\nlayers:\n  a: {prompt: !!python/object:os.system {}}", 3, "layers.a.prompt",
     "!!python/object:os.system"),
])
def test_language_specific_yaml_tags_are_refused_with_a_line(tagged, line, key, tag):
    text = tagged + ("\n" if "layers" in tagged else "\nlayers: {a: {prompt: b}}\n")
    assert error_for(text) == (f"scenes/x.yaml:{line}: {key}: scene files are plain data, and tags like {tag} "
                               f"are not allowed; remove the {tag} tag")


def test_yaml_values_that_cannot_be_built_give_a_line():
    assert error_for("name: x\nlayers: {a: {prompt: b}}\n? [1, 2]\n: x\n").startswith(
        "scenes/x.yaml:3: a key must be plain text, not a list or mapping; scene files are plain data")
    assert error_for("name: 2001-02-30\nlayers: {a: {prompt: b}}\n").startswith(
        'scenes/x.yaml:1: cannot read "2001-02-30" as timestamp (day is out of range for month)')
    assert error_for("name: x\nseed: !!int abc\nlayers: {a: {prompt: b}}\n").startswith(
        'scenes/x.yaml:2: cannot read "abc" as int')
    # Plain YAML merge keys are data, not a foreign tag.
    scene = parse_scene("name: x\nlayers:\n  a: &a {prompt: rain, weight: 0.5}\n  b: {<<: *a, weight: 0.2}\n")
    assert scene.layers["b"].prompt == "rain" and scene.layers["b"].weight == 0.2


def test_python_tag_is_exit_2_from_validate_and_play(tmp_path, capsys):
    bad = tmp_path / "evil.yaml"
    bad.write_text(SCENE.replace("name: Test scene", 'name: !!python/object/apply:os.system ["echo hi"]'))
    proc = subprocess.run([sys.executable, "-m", "soundscape", "validate", str(bad)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"{bad}:1: name: ") and "!!python/object/apply:os.system" in proc.stderr
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == ""  # nothing ran, nothing was reported valid
    assert main(["play", str(bad), "--output-device", "null"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [proc.stderr.strip()]
