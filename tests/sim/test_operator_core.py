"""The simulated teleoperator's rules: when it presses the pedal, releases it and how it labels."""

import dataclasses

import numpy as np
import pytest

from lwd_sim.operator_core import Decision, OperatorBrain, OperatorRules, Progress

RULES = OperatorRules(
    startup_grace_s=1.0,
    stall_window_s=2.0,
    stall_motion_rad=0.03,
    no_progress_s=6.0,
    engage_min_s=1.0,
    release_after_subtasks=1,
    max_engaged_s=10.0,
    max_interventions=2,
    settle_s=0.3,
    time_limit_s=30.0,
)
Q = np.zeros(16)
NOTHING = Progress(False, False, 0)


def run(brain, t0, t1, q_of_t=lambda t: Q, progress_of_t=lambda t: NOTHING, dt=1 / 30):
    out = []
    t = t0
    while t < t1:
        d = brain.observe(t, q_of_t(t), progress_of_t(t))
        if d != Decision.NONE:
            out.append((round(t, 2), d))
        t += dt
    return out


def test_a_still_robot_is_taken_over_after_the_stall_window():
    brain = OperatorBrain(RULES)
    brain.start_episode(0.0)
    decisions = run(brain, 0.0, 3.0)
    assert [d for _, d in decisions] == [Decision.ENGAGE]
    assert 1.8 <= decisions[0][0] <= 2.2 and brain.reason == "stall"


def test_a_moving_robot_without_progress_is_taken_over_after_no_progress_timeout():
    brain = OperatorBrain(RULES)
    brain.start_episode(0.0)
    decisions = run(brain, 0.0, 7.0, q_of_t=lambda t: Q + np.sin(3 * t))
    assert [d for _, d in decisions] == [Decision.ENGAGE]
    assert decisions[0][0] == pytest.approx(6.0, abs=0.1) and brain.reason == "no_progress"


def test_a_robot_making_progress_is_left_alone():
    brain = OperatorBrain(RULES)
    brain.start_episode(0.0)
    decisions = run(
        brain,
        0.0,
        20.0,
        q_of_t=lambda t: Q + np.sin(3 * t),
        progress_of_t=lambda t: Progress(False, False, int(t // 5)),
    )
    assert decisions == []


def test_release_comes_after_a_new_subtask_and_the_minimum_engagement():
    brain = OperatorBrain(RULES)
    brain.start_episode(0.0)
    run(brain, 0.0, 2.5)
    assert brain.engaged
    decisions = run(
        brain, 2.5, 6.0, q_of_t=lambda t: Q + t, progress_of_t=lambda t: Progress(False, False, 1)
    )
    assert [d for _, d in decisions] == [Decision.RELEASE] and not brain.engaged


def test_interventions_are_capped_per_episode():
    brain = OperatorBrain(RULES)
    brain.start_episode(0.0)
    decisions = run(brain, 0.0, 29.0)  # never progresses: engage, give up after max_engaged, repeat
    assert [d for _, d in decisions].count(Decision.ENGAGE) == 2


def test_success_stops_after_settling_and_failure_stops_at_once():
    brain = OperatorBrain(RULES)
    brain.start_episode(0.0)
    decisions = run(
        brain, 0.0, 1.0, q_of_t=lambda t: Q + t, progress_of_t=lambda t: Progress(t > 0.5, False, 4)
    )
    assert decisions[0][1] == Decision.STOP_SUCCESS and decisions[0][0] >= 0.8
    brain.start_episode(0.0)
    assert brain.observe(0.1, Q, Progress(False, True, 1)) == Decision.STOP_FAILURE


def test_time_limit_ends_the_episode_as_failure():
    brain = OperatorBrain(OperatorRules(time_limit_s=5.0, intervene=False))
    brain.start_episode(0.0)
    decisions = run(brain, 0.0, 6.0)
    assert decisions[0][1] == Decision.STOP_FAILURE and brain.reason == "time_limit"


def test_bad_rules_are_refused():
    with pytest.raises(ValueError, match="time_limit_s"):
        OperatorRules(time_limit_s=0)


def test_a_gripper_heading_into_the_table_is_taken_over_as_drift():
    brain = OperatorBrain(RULES)
    brain.start_episode(0.0)
    inside = np.array([[0.4, 0.2, 0.95], [0.4, -0.2, 0.95]])
    into_table = np.array([[0.4, 0.2, 0.70], [0.4, -0.2, 0.95]])
    moving = Q + 1.0
    assert brain.observe(1.5, moving, NOTHING, inside) == Decision.NONE
    assert brain.observe(1.6, moving + 0.5, NOTHING, into_table) == Decision.ENGAGE
    assert brain.reason == "drift"


def test_drift_is_ignored_during_the_startup_grace():
    brain = OperatorBrain(RULES)
    brain.start_episode(0.0)
    outside = np.array([[1.2, 0.0, 0.9], [0.4, -0.2, 0.95]])
    assert brain.observe(0.2, Q, NOTHING, outside) == Decision.NONE


def test_no_progress_timeout_defaults_to_a_quarter_of_the_time_limit():
    assert OperatorRules(time_limit_s=8.0).no_progress_s == pytest.approx(2.0)
    assert OperatorRules(time_limit_s=8.0, no_progress_s=3.0).no_progress_s == 3.0
    with pytest.raises(ValueError, match="no_progress_s"):
        OperatorRules(no_progress_s=-1.0)


def test_rules_from_node_parameters_take_a_quarter_of_the_episode_time_limit():
    """The node reads its parameters before it knows the task: 'no_progress_s 0' must still mean a
    quarter of the *task's* limit (2 s of can_to_bin's 8 s), not of the rules' 60 s default."""
    from lwd_sim.operator_core import default_parameters, rules_from_parameters

    assert default_parameters()["no_progress_s"] == 0.0
    rules = rules_from_parameters(default_parameters(), time_limit_s=8.0)
    assert rules.no_progress_s == 2.0 and rules.time_limit_s == 8.0
    rules = rules_from_parameters({"no_progress_s": 3, "release_after_subtasks": 99}, time_limit_s=8.0)
    assert rules.no_progress_s == 3.0 and rules.release_after_subtasks == 99


def test_rescue_probability_zero_never_takes_over():
    brain = OperatorBrain(dataclasses.replace(RULES, rescue_probability=0.0))
    brain.start_episode(0.0)
    assert run(brain, 0.0, 29.0) == []  # a still robot, never rescued: the time limit ends it
    assert not brain.engaged and brain.interventions == 0 and brain.let_go == 1


def test_rescue_probability_one_takes_over_as_before():
    decisions = []
    for rules in (RULES, dataclasses.replace(RULES, rescue_probability=1.0)):
        brain = OperatorBrain(rules)
        brain.start_episode(0.0)
        decisions.append(run(brain, 0.0, 29.0))
    assert decisions[0] == decisions[1] and decisions[0][0][1] == Decision.ENGAGE


def test_a_trouble_let_go_is_reconsidered_only_once_it_clears():
    rules = dataclasses.replace(RULES, rescue_probability=0.5)
    draws = np.random.default_rng(6).random(2)
    assert draws[0] >= 0.5 > draws[1]  # seed 6: the first trouble is let go, the second rescued
    brain = OperatorBrain(rules, rng=6)
    brain.start_episode(0.0)
    assert run(brain, 0.0, 5.0) == []  # stalled from 2 s on: let go, and stays let go
    moving = run(brain, 5.0, 6.0, q_of_t=lambda t: Q + t)  # the arm moves again: the stall clears
    assert moving == [] and not brain.letting_go
    decisions = run(brain, 6.0, 9.0)  # stalls again: a new draw, rescued
    assert [d for _, d in decisions] == [Decision.ENGAGE] and brain.let_go == 1


def test_the_rescue_draws_are_seeded_and_kept_across_episodes():
    rules = dataclasses.replace(RULES, rescue_probability=0.5)

    def episodes(brain):
        out = []
        for _ in range(6):
            brain.start_episode(0.0)
            out.append(bool(run(brain, 0.0, 3.0)))
        return out

    a, b = episodes(OperatorBrain(rules, rng=7)), episodes(OperatorBrain(rules, rng=7))
    assert a == b and True in a and False in a


def test_startup_grace_defers_the_takeover_of_a_stall():
    """A late operator: no takeover before startup_grace_s, then at once if the robot is still stalled."""
    brain = OperatorBrain(dataclasses.replace(RULES, startup_grace_s=4.0))
    brain.start_episode(0.0)
    decisions = run(brain, 0.0, 6.0)
    assert [d for _, d in decisions] == [Decision.ENGAGE]
    assert decisions[0][0] == pytest.approx(4.0, abs=0.05)


def test_a_rescue_probability_outside_0_1_is_refused():
    with pytest.raises(ValueError, match="rescue_probability"):
        OperatorRules(rescue_probability=1.5)


def test_rescue_probability_is_a_node_parameter():
    from lwd_sim.operator_core import default_parameters, rules_from_parameters

    assert default_parameters()["rescue_probability"] == 1.0
    assert rules_from_parameters({"rescue_probability": 0.25}, time_limit_s=8.0).rescue_probability == 0.25


def test_sim_yaml_lists_every_operator_parameter():
    import pathlib

    import yaml

    from lwd_sim.operator_core import default_parameters

    path = pathlib.Path(__file__).parents[2] / "ros2_ws/src/lwd_actor/config/sim.yaml"
    declared = yaml.safe_load(path.read_text())["/**/sim_operator"]["ros__parameters"]
    assert set(default_parameters()) <= set(declared)
    assert declared["rescue_probability"] == 1.0 and declared["startup_grace_s"] == 1.0  # today's operator
