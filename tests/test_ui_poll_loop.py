"""The console's poll worker at a start (ironpost_tui/ui/poll_loop.py): what it says, in which order."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
from support.ui import StartingSource, event

from ironpost_tui.engine.feed import RulesHead, Update
from ironpost_tui.errors import IronpostError
from ironpost_tui.kernel.host import InterfaceState
from ironpost_tui.ui import poll_loop
from ironpost_tui.ui.messages import NoticePosted, RulesHeadShown, RulesRefreshed, SourceFailed, SourceStarted


class Polled(StartingSource):
    """A source that has started (go set) and counts its polls' timeouts; ``fail_first`` raises at the first."""

    def __init__(self, fail_first: Exception | None = None) -> None:
        super().__init__()
        self.go.set()
        self.timeouts: list[float] = []
        self.fail_first = fail_first

    def poll(self, timeout: float) -> Update:
        self.timeouts.append(timeout)
        if self.fail_first is not None and len(self.timeouts) == 1:
            raise self.fail_first
        return replace(super().poll(0.0), at=float(len(self.timeouts)))


def run(source: Polled, polls: int) -> list[str]:
    posted: list[object] = []
    poll_loop.run_poll(source, posted.append, lambda: len(source.timeouts) >= polls, 0.5, must_start=True)  # type: ignore[arg-type]
    return [type(m).__name__ for m in posted]


def test_a_start_says_attached_after_the_first_polls_table_and_that_poll_does_not_wait() -> None:
    source = Polled()
    kinds = run(source, 2)
    assert kinds.index(RulesRefreshed.__name__) < kinds.index(SourceStarted.__name__)
    assert kinds.count(SourceStarted.__name__) == 1
    assert source.timeouts == [0.0, 0.5]  # the first poll at once, the next ones as configured


def test_a_first_poll_that_fails_still_leaves_the_starting_screen_and_a_fatal_one_says_so() -> None:
    kinds = run(Polled(fail_first=RuntimeError("boom")), 2)  # logged and retried: attached all the same
    assert kinds.count(SourceStarted.__name__) == 1 and SourceFailed.__name__ not in kinds
    kinds = run(Polled(fail_first=IronpostError("gone")), 1)
    assert kinds == [SourceFailed.__name__]


class HeadFirst(Polled):
    """Its first update brings a long table's head only, as the console's engine process sends it."""

    def poll(self, timeout: float) -> Update:
        update = super().poll(timeout)
        if len(self.timeouts) == 1:
            assert update.rules is not None
            return replace(update, rules=None, rules_head=RulesHead(update.rules[:1], 5_000, 4_000, 30))
        return update


def test_a_poll_that_brought_a_tables_head_is_followed_at_once_by_the_poll_for_the_whole() -> None:
    source = HeadFirst()
    kinds = run(source, 3)
    assert kinds.index(RulesHeadShown.__name__) < kinds.index(SourceStarted.__name__)  # attached with its head
    assert source.timeouts == [0.0, 0.0, 0.5]  # the control, a whole first table: [0.0, 0.5] above


class WithAnEvent(Polled):
    """Its first update brings one event (which the worker holds for a batch, BATCH_SECS, before it polls
    again), and with ``head`` a long table's head only."""

    def __init__(self, head: bool) -> None:
        super().__init__()
        self.head = head

    def poll(self, timeout: float) -> Update:
        update = super().poll(timeout)
        if len(self.timeouts) == 1:
            update = replace(update, events=(event(),))
            if self.head:
                assert update.rules is not None
                update = replace(update, rules=None, rules_head=RulesHead(update.rules[:1], 5_000, 4_000, 30))
        return update


def test_the_poll_for_the_whole_table_is_not_held_for_a_batch_of_events(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(poll_loop, "BATCH_SECS", 30.0)
    source = WithAnEvent(head=True)
    t0 = time.monotonic()
    poll_loop.run_poll(source, [].append, lambda: len(source.timeouts) >= 3, 30.0, must_start=True)  # type: ignore[arg-type]
    assert time.monotonic() - t0 < 10  # not held for 30 s
    assert source.timeouts[:2] == [0.0, 0.0]
    # the control: the same event with a whole table is held for its batch
    monkeypatch.setattr(poll_loop, "BATCH_SECS", 1.0)
    source = WithAnEvent(head=False)
    t0 = time.monotonic()
    poll_loop.run_poll(source, [].append, lambda: len(source.timeouts) >= 2, 30.0, must_start=True)  # type: ignore[arg-type]
    assert time.monotonic() - t0 >= 0.9


class SaysThings(Polled):
    """Its first update has a notice, and the interface it reports is down."""

    def poll(self, timeout: float) -> Update:
        update = super().poll(timeout)
        if len(self.timeouts) == 1:
            return replace(update, notices=("reload refused: bad file",), interface_state=InterfaceState.DOWN)
        return update


def test_what_the_first_poll_says_comes_after_attached_so_the_notice_line_shows_it() -> None:
    posted: list[object] = []
    source = SaysThings()
    poll_loop.run_poll(source, posted.append, lambda: len(source.timeouts) >= 2, 0.5, must_start=True)  # type: ignore[arg-type]
    kinds = [type(m).__name__ for m in posted]
    started = kinds.index(SourceStarted.__name__)
    said = [str(m.text) for m in posted if isinstance(m, NoticePosted)]
    assert said == ["interface eth9 is down", "reload refused: bad file"]
    assert all(i > started for i, k in enumerate(kinds) if k == NoticePosted.__name__)
    assert kinds.index(RulesRefreshed.__name__) < started


# --- when the source last answered (the console's "no answer" when it stops) -----------------------------------
def test_the_worker_says_when_the_source_last_answered_and_not_while_it_waits() -> None:
    """Each poll's return is an answer (a failing one too: it did answer); a poll that does not return is
    not (the control: the same source's silence grows while it holds its poll, and drops once it returns)."""
    import threading
    import time

    from ironpost_tui.engine.feed import Answers

    answers = Answers()
    assert answers.silent_for(time.monotonic() + 100) == 0.0  # no answer yet: nothing to say
    source = Polled(fail_first=RuntimeError("boom"))
    poll_loop.run_poll(source, lambda m: None, lambda: len(source.timeouts) >= 1, 0.01, answers=answers)  # type: ignore[arg-type]
    assert answers.at is not None and answers.silent_for(time.monotonic()) < 5  # the failed poll counted

    class Holding(Polled):
        def __init__(self) -> None:
            super().__init__()
            self.hold, self.held = threading.Event(), threading.Event()

        def poll(self, timeout: float) -> Update:
            if len(self.timeouts) == 2:  # the third poll waits until released
                self.held.set()
                self.hold.wait(10)
            return super().poll(timeout)

    answers = Answers()
    source2 = Holding()
    worker = threading.Thread(
        target=poll_loop.run_poll, args=(source2, lambda m: None, lambda: len(source2.timeouts) >= 4, 0.01),
        kwargs={"must_start": True, "answers": answers},
    )  # fmt: skip
    worker.start()
    try:
        assert source2.held.wait(10)
        time.sleep(0.3)
        assert answers.silent_for(time.monotonic()) >= 0.3  # held: no answer since
    finally:
        source2.hold.set()
        worker.join(10)
    assert answers.silent_for(time.monotonic()) < 0.3  # answered again


# --- backpressure: the worker waits while the console has updates to apply ----------------------------------------
def test_the_worker_waits_while_the_console_has_not_applied_its_updates_and_that_wait_is_no_silence() -> None:
    """Textual's queue of messages from a thread has no bound: a replay of one instant, or a flood the console
    cannot keep up with, filled it (until session 26).  With ``in_flight`` the worker asks nothing more while
    ``most`` updates wait; each SourceAdvanced the console applies lets one more poll go.  The control: without
    it, the same source is polled on and on."""
    import threading

    from ironpost_tui.engine.feed import Answers

    class Big(Polled):  # every poll a big batch: followed at once
        def poll(self, timeout: float) -> Update:
            self.timeouts.append(timeout)
            return Update(events=tuple(event() for _ in range(poll_loop.BIG_BATCH)), at=float(len(self.timeouts)))

    def polls_within(in_flight: poll_loop.InFlight | None, answers: Answers, secs: float) -> Big:
        source, stop = Big(), threading.Event()
        worker = threading.Thread(target=poll_loop.run_poll, args=(source, lambda m: None, stop.is_set, 0.5),
                                  kwargs={"answers": answers, "in_flight": in_flight})  # fmt: skip
        worker.start()
        time.sleep(secs)
        if in_flight is not None:
            assert answers.holding and answers.silent_for(time.monotonic() + 60) == 0.0  # waiting is not silence
            seen = len(source.timeouts)
            in_flight.applied()  # the console applied one update: one more poll
            time.sleep(0.3)
            assert len(source.timeouts) == seen + 1
        stop.set()
        worker.join(5)
        assert not worker.is_alive()
        return source

    held = polls_within(poll_loop.InFlight(most=3), Answers(), 0.5)
    assert len(held.timeouts) == 4  # three, then one after the console applied one
    free = polls_within(None, Answers(), 0.5)
    assert len(free.timeouts) > 20  # the control
