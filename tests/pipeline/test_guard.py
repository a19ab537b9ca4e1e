"""The consume loop's poison-pill guard: too many rejections in a row stop it before anything commits."""

import pytest

from demands.pipeline import loop as loop_module
from demands.pipeline.loop import ConsumerFailed, RejectRatioExceeded
from demands.models import Demand, RejectedMessage

from ..conftest import REFERENCE, record
from ..test_consume_loop import make_loop

pytestmark = pytest.mark.django_db(transaction=True)


def good(offset):
    return record({**REFERENCE, "id": f"g{offset}"}, offset=offset)


def bad(offset):
    return record(b"{broken", offset=offset)


def test_a_batch_that_pushes_the_window_past_the_limit_is_rolled_back_and_not_committed():
    batches = [[good(0), bad(1)], [bad(2), bad(3), bad(4), good(5)]]  # window 4: 3 of the last 4 bad in batch 2
    loop, holder, producer, _ = make_loop(batches, max_reject_ratio=0.5, reject_window=4)
    with pytest.raises(RejectRatioExceeded, match=r"3 of the last 4 records were rejected \(75%, limit 50%\)"):
        loop.run()
    assert holder["consumer"].commits == [{("demand-topic", 0): 2}]  # only the first batch
    assert list(Demand.objects.values_list("message_id", flat=True)) == ["g0"]  # g5 rolled back
    assert RejectedMessage.objects.count() == 1  # offsets 2–4 were not stored…
    assert len(producer.produced) == 1  # …nor dead-lettered
    assert holder["consumer"].closed


def test_the_error_names_the_reasons_and_is_a_consumer_failure_so_the_command_exits_non_zero():
    loop, _, _, _ = make_loop([[bad(i) for i in range(5)]], max_reject_ratio=0.5, reject_window=5)
    with pytest.raises(ConsumerFailed) as failure:
        loop.run()
    assert isinstance(failure.value, RejectRatioExceeded)
    assert "message is not valid JSON (×5)" in str(failure.value)
    assert "CONSUMER_MAX_REJECT_RATIO" in str(failure.value)


def test_the_guard_is_not_retried_like_a_database_error(monkeypatch):
    calls = {"n": 0}
    real = loop_module.persist_batch

    def counting(records):
        calls["n"] += 1
        return real(records)

    monkeypatch.setattr(loop_module, "persist_batch", counting)
    loop, _, _, _ = make_loop([[bad(i) for i in range(4)]], max_reject_ratio=0.5, reject_window=4, max_failures=5)
    with pytest.raises(RejectRatioExceeded):
        loop.run()
    assert calls["n"] == 1


def test_a_few_bad_messages_before_the_window_fills_do_not_stop_the_consumer():
    loop, holder, _, _ = make_loop([[bad(0), bad(1)], [bad(2)]], max_reject_ratio=0.5, reject_window=10)
    loop.run()
    assert RejectedMessage.objects.count() == 3
    assert len(holder["consumer"].commits) == 2


def test_bad_messages_mixed_with_good_ones_below_the_limit_keep_flowing():
    batches = [[good(0), bad(1)], [good(2), bad(3)], [good(4), bad(5)], [good(6), good(7)]]
    loop, holder, _, _ = make_loop(batches, max_reject_ratio=0.5, reject_window=4)  # never more than half
    loop.run()
    assert Demand.objects.count() == 5 and RejectedMessage.objects.count() == 3
    assert len(holder["consumer"].commits) == 4


def test_the_window_slides_so_old_rejections_age_out():
    batches = [[bad(0), bad(1)], [good(2), good(3)], [good(4), bad(5)], [bad(6)]]
    loop, holder, _, _ = make_loop(batches, max_reject_ratio=0.5, reject_window=4)
    loop.run()  # at most 2 of any 4 consecutive records are bad: never over half
    assert len(holder["consumer"].commits) == 4


def test_a_ratio_of_one_turns_the_guard_off():
    loop, holder, _, _ = make_loop([[bad(i) for i in range(6)]], max_reject_ratio=1, reject_window=2)
    loop.run()
    assert RejectedMessage.objects.count() == 6
    assert len(holder["consumer"].commits) == 1


def test_defaults_come_from_settings(settings):
    settings.CONSUMER_MAX_REJECT_RATIO = 0.25
    settings.CONSUMER_REJECT_WINDOW = 8
    loop, _, _, _ = make_loop([])
    assert (loop.max_reject_ratio, loop.reject_window) == (0.25, 8)


def stored_rejections(count):
    from demands.pipeline.persist import persist_batch

    persist_batch([record(b"{old", offset=100 + i, partition=1) for i in range(count)])


def test_a_restarted_consumer_remembers_recent_rejections_and_stops_at_the_first_bad_batch():
    stored_rejections(4)  # what a previous run dead-lettered before the guard stopped it
    loop, holder, producer, _ = make_loop([[bad(0)]], max_reject_ratio=0.5, reject_window=4)
    with pytest.raises(RejectRatioExceeded):
        loop.run()
    assert holder["consumer"].commits == [] and producer.produced == []
    assert RejectedMessage.objects.count() == 4


def test_that_history_never_stops_a_fixed_consumer_whose_batches_are_valid():
    stored_rejections(4)
    loop, holder, _, _ = make_loop([[good(0)], [good(1)]], max_reject_ratio=0.5, reject_window=4)
    loop.run()
    assert Demand.objects.count() == 2 and len(holder["consumer"].commits) == 2


def test_rejections_staff_already_handled_are_not_counted_as_history():
    stored_rejections(4)
    RejectedMessage.objects.update(status=RejectedMessage.Status.DISCARDED)
    loop, holder, _, _ = make_loop([[bad(0)]], max_reject_ratio=0.5, reject_window=4)
    loop.run()
    assert len(holder["consumer"].commits) == 1



def keyed(value, offset, source):
    return record(value, offset=offset, key=f"{source}:{offset}".encode())


def test_one_source_flooding_bad_messages_is_dead_lettered_while_the_other_sources_keep_flowing():
    batches = [[keyed({**REFERENCE, "id": f"ok{i}"}, i, "web_app") for i in range(4)],
               [keyed(b"{broken", 10 + i, "shop") for i in range(8)],
               [keyed({**REFERENCE, "id": "later"}, 30, "web_app")]]
    loop, holder, producer, _ = make_loop(batches, max_reject_ratio=0.5, reject_window=10)
    loop.run()  # 8 of the last 10 rejected, all from one source: not a stop
    assert Demand.objects.count() == 5
    assert RejectedMessage.objects.count() == 8 and len(producer.produced) == 8  # kept and dead-lettered
    assert holder["consumer"].closed


def test_rejections_without_a_key_name_no_source_and_still_stop_the_consumer():
    batches = [[keyed({**REFERENCE, "id": f"ok{i}"}, i, "web_app") for i in range(4)],
               [bad(10 + i) for i in range(8)]]
    loop, _, _, _ = make_loop(batches, max_reject_ratio=0.5, reject_window=10)
    with pytest.raises(RejectRatioExceeded):
        loop.run()
