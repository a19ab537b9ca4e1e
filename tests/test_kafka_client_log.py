"""librdkafka's connection noise becomes one line per state change and a summary while it lasts."""

import logging

from demands.kafka import ClientLog, OutageLog, client_config


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _refused(log: ClientLog) -> None:
    log.log(logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#producer-1",
            "127.0.0.1:9092/1: Connect to ipv4#127.0.0.1:9092 failed: Connection refused (after 0ms in state CONNECT)")


def test_a_broker_outage_logs_one_warning_a_summary_a_minute_and_one_line_when_it_is_back(caplog):
    clock = Clock()
    logger = logging.getLogger("test.kafka.client")
    log = ClientLog(logger, OutageLog(logger, "Kafka", clock=clock))
    with caplog.at_level(logging.INFO, logger="test.kafka.client"):
        for _ in range(20 * 59):  # ~20 refused connections a second for 59 s
            _refused(log)
            clock.now += 0.05
        clock.now = 61
        _refused(log)
        clock.now = 70
        log.outage.ok()
        log.outage.ok()
    lines = [(record.levelname, record.getMessage().split(":")[1].strip()[:20]) for record in caplog.records]
    assert lines == [("WARNING", "unreachable (127.0.0"), ("WARNING", "still unreachable af"), ("INFO", "reachable again afte")]
    assert "1181 failures" in caplog.records[-1].getMessage()


def test_other_librdkafka_lines_pass_through_at_their_level(caplog):
    logger = logging.getLogger("test.kafka.other")
    log = ClientLog(logger, OutageLog(logger, "Kafka"))
    with caplog.at_level(logging.INFO, logger="test.kafka.other"):
        log.log(logging.WARNING, "%s [%s] %s", "CONFWARN", "rdkafka#consumer-2", "Configuration property x is deprecated")
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "CONFWARN [rdkafka#consumer-2] Configuration property x is deprecated")]
    assert not log.outage.down


def test_every_client_logs_through_the_gate():
    assert isinstance(client_config()["logger"], ClientLog)
