"""Controller maths: keyframes, loop, drift, overrides, scene changes. Pure functions, no model."""

import pytest

from soundscape.stream import controller
from soundscape.scene import parse_scene

BASE = """\
name: c
seed: 3
layers:
  a: {prompt: rain, weight: 0.2}
  b: {prompt: wind, weight: 0.6}
evolution:
  keyframes:
    - {at: 10, weights: {a: 1.0}}
    - {at: 20, weights: {a: 0.0, b: 0.0}}
  drift: {depth: 0, period_seconds: 60}
  transition_seconds: 4
"""


def scene(text=BASE, **repl):
    for k, v in repl.items():
        text = text.replace(k, v)
    return parse_scene(text)


def test_keyframes_are_exact_at_their_times_and_eased_between():
    s = scene()
    w = lambda t: controller.weights_at(s, t)
    assert w(0)["a"] == pytest.approx(0.2)  # before the first keyframe: the layer weight
    assert w(10)["a"] == 1.0 and w(20)["a"] == 0.0 and w(20)["b"] == 0.0
    assert w(15)["a"] == pytest.approx(0.5)  # eased: halfway at the middle
    assert w(11)["a"] > w(12)["a"] > w(13)["a"]  # falling from 10 to 20
    assert w(10.01)["a"] > 0.999  # zero slope at the keyframe: no corner
    assert w(100)["a"] == 0.0  # held after the last keyframe
    assert w(15)["b"] == pytest.approx(0.6 + (0.0 - 0.6) * 0.5)  # b: its own weight at 10, 0 at 20


def test_loop_returns_to_the_start():
    s = scene(**{"  drift:": "  loop_seconds: 30\n  drift:"})
    w = lambda t: controller.weights_at(s, t)
    assert w(10)["a"] == w(40)["a"] == w(70)["a"] == 1.0
    assert w(20)["a"] == w(50)["a"] == 0.0
    # From the last keyframe (20 s) the loop eases back to the first (10 s + 30 s).
    assert 0 < w(30)["a"] < 1 and w(25)["a"] < w(35)["a"]


def test_drift_is_bounded_smooth_and_reproducible():
    s = scene(**{"depth: 0,": "depth: 0.1,"})
    values = [controller.drift(s, "b", t) for t in range(0, 3600)]
    assert max(abs(v) for v in values) <= 0.1
    assert max(values) - min(values) > 0.05  # it moves
    # ...slowly: its fastest partial has a period of 0.37 x 60 s, so under 0.03 a second.
    assert max(abs(x - y) for x, y in zip(values, values[1:])) < 0.03
    assert values == [controller.drift(s, "b", t) for t in range(0, 3600)]
    assert controller.drift(s, "a", 100) != controller.drift(s, "b", 100)  # each layer its own
    other = scene(**{"depth: 0,": "depth: 0.1,", "seed: 3": "seed: 4"})
    assert controller.drift(other, "b", 100) != controller.drift(s, "b", 100)


def test_override_is_exact_after_its_transition():
    s = scene(**{"depth: 0,": "depth: 0.2,"})
    o = (controller.Override("b", 0.0, at=1.0),)
    before = controller.weights_at(s, 1.0)["b"]
    assert before > 0.3
    assert controller.weights_at(s, 1.0, o)["b"] == pytest.approx(before)
    assert 0 < controller.weights_at(s, 3.0, o)["b"] < before
    assert controller.weights_at(s, 5.0, o)["b"] == 0.0
    assert controller.weights_at(s, 500.0, o)["b"] == 0.0  # no drift on an overridden layer


def test_scene_change_crossfades_prompts():
    old = scene()
    new = scene(**{"prompt: wind": "prompt: thunder"})
    change = controller.SceneChange(before=old, before_overrides=(), at=0.0)
    def at(t):
        return {p: w for p, w in controller.prompt_weights(new, t, (), change).items() if w > 0}

    assert at(0.0) == pytest.approx(controller.prompt_weights(old, 0.0))  # starts where it was
    mid = at(2.0)
    assert mid["wind"] == pytest.approx(0.3) and mid["thunder"] == pytest.approx(0.3)
    assert at(4.0) == pytest.approx(controller.prompt_weights(new, 4.0))  # ends at the new scene
