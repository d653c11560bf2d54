"""Which worker's backup the workers adopt (cellship/inside/backups.py); the collective
exchange itself runs in tests/integration/test_local_backend.py and on the cluster."""

from cellship.inside import backups


def test_the_freshest_copy_wins_the_lowest_worker_on_a_tie() -> None:
    assert backups.freshest([3, 2]) == 0
    assert backups.freshest([2, 3, 3]) == 1
    assert backups.freshest([-1, 4]) == 1  # a recreated replica holds nothing


def test_nothing_to_do_when_all_agree_or_none_has_a_copy() -> None:
    assert backups.freshest([5, 5]) is None
    assert backups.freshest([-1, -1]) is None


def test_only_pods_keep_private_copies() -> None:
    assert backups.private_job_dir({"CELLSHIP_PRIVATE_JOB_DIR": "1"})
    assert not backups.private_job_dir({})
