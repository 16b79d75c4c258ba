import numpy as np
import pytest

from licrt.runtime.errors import BundleError
from licrt.runtime.json_fields import Field
from licrt.runtime.schedule import CodingSchedule, ContextStep


def two_pass(channels=4, parity_first="checkerboard-even", parity_second="checkerboard-odd"):
    return CodingSchedule(
        channels=channels,
        steps=(
            ContextStep("a", (0, channels), parity_first, reads=("hyper",), writes=("ctx",)),
            ContextStep("b", (0, channels), parity_second, reads=("hyper", "y_hat", "ctx")),
        ),
    )


def test_checkerboard_masks_partition_the_grid():
    even = ContextStep("e", (0, 1), "checkerboard-even", ()).position_mask(5, 7)
    odd = ContextStep("o", (0, 1), "checkerboard-odd", ()).position_mask(5, 7)
    assert not np.any(even & odd) and np.all(even | odd)
    assert even[0, 0] and not even[0, 1] and even[1, 1]


def test_json_round_trip():
    schedule = two_pass()
    assert CodingSchedule.from_json(Field(schedule.to_json(), "schedule", "manifest.json")) == schedule


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: two_pass(parity_second="checkerboard-even"), "not coded exactly once"),
        (lambda: CodingSchedule(4, (ContextStep("a", (0, 4), "all", ("hyper",)),
                                    ContextStep("b", (0, 2), "all", ("hyper",)))), "not coded exactly once"),
        (lambda: CodingSchedule(4, (ContextStep("a", (0, 5), "all", ("hyper",)),)), "channels [0, 5)"),
        (lambda: CodingSchedule(4, (ContextStep("a", (0, 4), "diagonal", ("hyper",)),)), "positions"),
        (lambda: CodingSchedule(4, (ContextStep("a", (0, 4), "all", ("ctx",)),)), "reads ctx"),
        (lambda: CodingSchedule(4, (ContextStep("a", (0, 2), "all", ("hyper",)),
                                    ContextStep("a", (2, 4), "all", ("hyper",)))), "used twice"),
    ],
)
def test_malformed_schedules_are_rejected(make, message):
    with pytest.raises(BundleError, match=message.replace("[", r"\[").replace(")", r"\)")):
        make()
