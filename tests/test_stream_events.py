"""The stream events aggregator (worker/stream_events.py) with a fake clock: a herd through a
gate makes a few summaries, never one call per animal, and no event is ever lost."""

from __future__ import annotations

from dataclasses import dataclass

from worker.stream_events import EventAggregator


@dataclass
class Event:
    kind: str
    name: str
    direction: str | None
    class_name: str
    at: str
    track_id: int = 0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def crossing(name: str = "gate", direction: str = "in", cls: str = "cow", at: str = "t") -> Event:
    return Event("line_crossing", name, direction, cls, at)


def total_events(batches: list[list[dict]]) -> int:
    return sum(summary["events"] for batch in batches for summary in batch)


def test_the_first_event_goes_at_once_and_the_rest_wait_out_the_cooldown():
    clock = Clock()
    aggregator = EventAggregator(cooldown_s=30, per_minute=100, clock=clock)
    aggregator.add(crossing(at="t0"))
    first = aggregator.due()
    assert first == [{"target": "line", "name": "gate", "from": "t0", "to": "t0", "events": 1, "in": {"cow": 1}}]
    for second in range(20):
        clock.now += 1
        aggregator.add(crossing(direction="out" if second % 4 == 0 else "in", cls="sheep" if second % 5 == 0 else "cow",
                                at=f"t{second + 1}"))
        assert aggregator.due() == []  # within the cooldown: merged, not sent
    clock.now += 10  # 30 s since the first summary
    [summary] = aggregator.due()
    assert summary["events"] == 20 and summary["from"] == "t1" and summary["to"] == "t20"
    assert sum(summary["in"].values()) + sum(summary["out"].values()) == 20
    assert summary["out"] == {"cow": 4, "sheep": 1} and summary["in"] == {"cow": 12, "sheep": 3}
    assert aggregator.pending == 0 and aggregator.due() == []


def test_a_herd_of_300_through_a_gate_makes_a_handful_of_webhooks_and_loses_no_event():
    clock = Clock()
    aggregator = EventAggregator(cooldown_s=10, per_minute=6, clock=clock)
    batches = []
    for animal in range(300):  # one every 0.2 s: a minute of herd
        aggregator.add(crossing(at=str(animal)))
        aggregator.add(Event("zone_entry", "pen", None, "cow", str(animal)))
        clock.now += 0.2
        if batch := aggregator.due():
            batches.append(batch)
    assert len(batches) <= 7  # one at the first animal, then one per cooldown
    batches.append(aggregator.due(final=True))
    assert total_events(batches) == 600
    assert aggregator.pending == 0


def test_the_per_minute_cap_holds_summaries_back_until_a_slot_frees():
    clock = Clock()
    aggregator = EventAggregator(cooldown_s=0, per_minute=2, clock=clock)
    sent = []
    for line in range(5):  # five lines, five events at once: the cap allows two webhooks a minute
        aggregator.add(crossing(name=f"line-{line}"))
        if batch := aggregator.due():
            sent.append(batch)
    assert len(sent) == 2 and aggregator.pending == 3
    clock.now += 59.9
    assert aggregator.due() == []  # still the same minute
    clock.now += 0.2
    [batch] = [aggregator.due()]
    assert [s["name"] for s in batch] == ["line-2", "line-3", "line-4"]  # one webhook, three summaries
    assert total_events(sent) + total_events([batch]) == 5


def test_the_final_flush_sends_everything_past_cooldown_and_cap():
    clock = Clock()
    aggregator = EventAggregator(cooldown_s=3600, per_minute=1, clock=clock)
    aggregator.add(crossing())
    assert aggregator.due() != []
    aggregator.add(crossing(direction="out"))
    aggregator.add(Event("zone_exit", "pen", None, "horse", "t"))
    assert aggregator.due() == []
    final = aggregator.due(final=True)
    assert {(s["target"], s["name"]) for s in final} == {("line", "gate"), ("zone", "pen")}
    assert [s for s in final if s["target"] == "zone"][0]["exits"] == {"horse": 1}
    assert aggregator.due(final=True) == []  # nothing pending: no empty webhook
