"""Which checkpoints a trial keeps (`checkpoints.keep`): the rule, shared by Ray Train's own
retention, a trial trained in its Tune actor and the sweep's tracker (`trainers/retention.py`)."""

from __future__ import annotations

import math

import pytest

from clipsweep.trainers.retention import best_epoch, is_better, kept_epochs


@pytest.mark.parametrize(
    ("scores", "kept"),
    [
        ({1: 0.2, 2: 0.5, 3: 0.4, 4: 0.3}, {2, 4}),  # the best and the latest
        ({1: 0.2, 2: 0.3, 3: 0.4}, {3}),  # the latest is the best: one checkpoint
        ({1: 0.5, 2: 0.5, 3: 0.1}, {2, 3}),  # a tie goes to the later epoch, as Ray Train ranks it
        ({1: math.nan, 2: None, 3: math.nan}, {3}),  # nothing scored: the latest only
        ({1: 0.3, 2: math.nan, 3: 0.1}, {1, 3}),  # a NaN epoch is never the best
        ({}, set()),
    ],
)
def test_best_and_latest_keeps_at_most_two(scores, kept):
    assert kept_epochs(scores, "best_and_latest") == kept
    assert kept_epochs(scores, "all") == set(scores)


def test_the_tracker_and_the_trial_agree_on_the_best():
    # The tracker folds `is_better` over the epochs as they arrive; the trial ranks what it stored.
    scores = {1: 0.4, 2: 0.1, 3: 0.4, 4: math.nan, 5: 0.39}
    best, best_score = None, None
    for epoch, score in scores.items():
        if is_better(score, best_score):
            best, best_score = epoch, score
    assert best == best_epoch(scores) == 3
