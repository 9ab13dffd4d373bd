"""The campaign rules that need no server: the A/B decision (statsmodels' two-proportion z-test),
the arm a recipient gets, the send rate turned into a queue limit, the test's share, the CSV."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from pydantic import ValidationError

from activities.campaigns import activities_per_second, arm_of, batch_for, decide
from starter.routes.campaigns import parse_csv
from starter.service import Rejected
from workflows.campaign.models import AbPlan, Arm, test_size as share_of


def plan(**over) -> AbPlan:
    return AbPlan(**{"arms": [Arm(variant="a"), Arm(variant="b")], "min_per_arm": 100, **over})


def test_a_clear_winner_is_significant_and_the_rest_get_it():
    decision = decide(plan(), {"a": (1000, 50), "b": (1000, 90)})
    assert (decision["winner"], decision["rest_get"]) == ("b", "b")
    [test] = decision["tests"]
    # the textbook figures: pooled p = 0.07, se = sqrt(.07 * .93 * 2 / 1000), z = 0.04 / se
    assert test["against"] == "a" and test["z"] == pytest.approx(0.04 / math.sqrt(0.07 * 0.93 * 2 / 1000), rel=1e-3)
    assert test["p_value"] < 0.001 and test["significant"]
    assert [arm["rate"] for arm in decision["arms"]] == [0.05, 0.09]


def test_no_significant_winner_leaves_it_to_the_policy():
    close = {"a": (1000, 50), "b": (1000, 55)}
    assert decide(plan(), close)["rest_get"] == "a"  # the control
    split = decide(plan(no_winner="split"), close)
    assert (split["winner"], split["rest_get"]) == (None, None)
    assert "not significantly" in split["reason"] and "each their own arm" in split["reason"]


def test_an_arm_below_its_minimum_sample_decides_nothing():
    decision = decide(plan(min_per_arm=500), {"a": (400, 0), "b": (1000, 900)})
    assert decision["winner"] is None and decision["tests"] == [] and "a was sent to 400" in decision["reason"]


def test_more_arms_need_the_leader_to_beat_each_with_bonferroni():
    three = plan(arms=[Arm(variant="a"), Arm(variant="b"), Arm(variant="c")])
    decision = decide(three, {"a": (1000, 50), "b": (1000, 90), "c": (1000, 85)})
    assert decision["alpha"] == pytest.approx(0.025) and decision["winner"] is None  # b does not beat c
    clear = decide(three, {"a": (1000, 50), "b": (1000, 150), "c": (1000, 60)})
    assert clear["winner"] == "b" and {t["against"] for t in clear["tests"]} == {"a", "c"}


def test_nobody_succeeding_anywhere_is_no_winner_and_no_error():
    decision = decide(plan(), {"a": (200, 0), "b": (200, 0)})
    assert decision["winner"] is None and decision["tests"][0]["p_value"] == 1.0


def test_the_arm_is_stable_per_recipient_and_follows_the_weights():
    arms = [Arm(variant="control", weight=3), Arm(variant="new", weight=1)]
    picks = Counter(arm_of("spring", f"p{i}@example.com", arms) for i in range(8000))
    assert picks["control"] / 8000 == pytest.approx(0.75, abs=0.03)
    assert arm_of("spring", "Ann@Example.com", arms) == arm_of("spring", "ann@example.com", arms)
    # another campaign is another experiment: the same people split differently
    assert [arm_of("spring", f"p{i}@example.com", arms) for i in range(50)] != \
        [arm_of("autumn", f"p{i}@example.com", arms) for i in range(50)]


def test_the_rate_becomes_a_queue_limit_of_at_most_five_activities_a_second():
    assert (batch_for(125), activities_per_second(125)) == (1, pytest.approx(125 / 60))
    assert (batch_for(6000), activities_per_second(6000)) == (20, pytest.approx(5.0))
    assert batch_for(0) == 100 and activities_per_second(0) is None
    for rate in (1, 125, 301, 1000, 6000, 100_000):
        assert batch_for(rate) * activities_per_second(rate) * 60 == pytest.approx(rate)
        assert activities_per_second(rate) <= 5.0


def test_the_test_share_has_one_recipient_per_arm_at_least():
    assert share_of(1000, plan(test_fraction=0.2)) == 200
    assert share_of(3, plan(test_fraction=0.1)) == 2
    assert share_of(1, plan(test_fraction=0.1)) == 1


def test_a_plan_refuses_the_same_variant_twice_and_a_single_arm():
    with pytest.raises(ValidationError, match="once"):
        plan(arms=[Arm(variant="a"), Arm(variant="a")])
    with pytest.raises(ValidationError):
        plan(arms=[Arm(variant="a")])


async def test_a_csv_keeps_good_rows_and_names_the_line_and_field_of_bad_ones():
    good, bad = await parse_csv("email,name,plan\nann@example.com,Ann,gold\nbad,Bob,\n,Cy,\nd@example.com,,x\n")
    assert [(str(r.email), r.fields) for r in good] == [("ann@example.com", {"plan": "gold"})]
    assert [(b["line"], b["field"]) for b in bad] == [(3, "email"), (4, "email"), (5, "name")]
    with pytest.raises(Rejected, match="email and a name column"):
        await parse_csv("address,who\nx,y\n")
