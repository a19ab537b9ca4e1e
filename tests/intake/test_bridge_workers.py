"""bridge_amqp --processes N: the forking parent (demands/intake/workers.py), with trivial workers."""

import os
import signal

from demands.intake.workers import run_forked


def test_every_worker_runs_in_its_own_process_and_all_exiting_cleanly_is_0(tmp_path):
    def work(number):
        (tmp_path / f"w{number}").write_text(str(os.getpid()))

    assert run_forked(3, work) == 0
    pids = {(tmp_path / f"w{n}").read_text() for n in range(3)}
    assert len(pids) == 3 and str(os.getpid()) not in pids


def test_one_failing_worker_stops_the_others_and_the_parent_reports_1(tmp_path):
    def work(number):
        if number == 0:
            raise RuntimeError("broker gone for good")
        signal.pause()  # until the parent's SIGTERM ends it

    assert run_forked(2, work) == 1


def test_the_parents_signal_handlers_are_restored(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    run_forked(1, lambda number: None)
    assert signal.getsignal(signal.SIGTERM) is before
