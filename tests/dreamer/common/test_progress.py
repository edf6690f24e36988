"""dreamer.common.progress off a terminal: plain lines at each tenth of the total and after every_s seconds
without one (phase, step/total, ETA), nothing when quiet; a terminal gets tqdm. The clock is injected, so no
count here depends on how fast the machine is."""
import io
import re

from dreamer.common import progress
from dreamer.common.progress import LineProgress


class Clock:
    """A clock that moves only when told to."""

    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _records(text: str) -> list[str]:
    """Progress records as a log viewer sees them: '\\r' and '\\n' both end one."""
    return [r for r in re.split(r"[\r\n]", text) if r]


def test_a_file_gets_one_line_per_tenth_whatever_the_step_count():
    for total in (7, 10, 40, 300, 100_000):
        f, clock = io.StringIO(), Clock()
        for _ in LineProgress(range(total), desc="generate", unit="step", file=f, clock=clock):
            clock.t += 0.001                                   # fast steps: the 30 s rule never fires
        lines = _records(f.getvalue())
        assert "\r" not in f.getvalue() and len(lines) == min(total, 10), (total, lines)
        assert lines[-1].startswith(f"generate: 100% {total}/{total} step") and "ETA 0:00" in lines[-1]


def test_slow_steps_add_a_line_every_every_s_seconds():
    f, clock = io.StringIO(), Clock()
    bar = LineProgress(desc="distill dmd", total=1000, unit="step", file=f, every_s=30.0, clock=clock)
    for _ in range(50):                                        # 50 steps of 10 s: 500 s, 5 % of the total
        clock.t += 10.0
        bar.update(1)
    lines = _records(f.getvalue())
    assert len(lines) == 500 // 30, lines                      # no tenth crossed: the clock rule alone
    assert lines[0] == "distill dmd:   0% 3/1000 step, 0.1 step/s, elapsed 0:30, ETA 2:46:10"   # 997 left at 0.1 step/s
    bar.close()
    assert len(_records(f.getvalue())) == 500 // 30 + 1        # close: where it stopped (step 50)
    assert _records(f.getvalue())[-1].startswith("distill dmd:   5% 50/1000 step")


def test_postfix_initial_and_unknown_total():
    f, clock = io.StringIO(), Clock()
    bar = LineProgress(range(50, 100), desc="generate", total=100, initial=50, unit="step", file=f, clock=clock)
    for _ in bar:
        clock.t += 1.0
        bar.set_postfix(loss="0.1234", n=3)
    lines = _records(f.getvalue())
    assert len(lines) == 5 and lines[0].startswith("generate:  60% 60/100 step, 1 step/s")   # a resumed run
    assert lines[-1].endswith("ETA 0:00, loss=0.1234, n=3")
    f, clock = io.StringIO(), Clock()
    with LineProgress(desc="pairs", unit="pair", file=f, every_s=5.0, clock=clock) as b:
        for _ in range(12):
            clock.t += 1.0
            b.update(1)
    assert _records(f.getvalue()) == ["pairs: 5 pair, 1 pair/s, elapsed 0:05", "pairs: 10 pair, 1 pair/s, "
                                      "elapsed 0:10", "pairs: 12 pair, 1 pair/s, elapsed 0:12"]


def test_bar_picks_tqdm_on_a_terminal_lines_elsewhere_and_nothing_when_quiet():
    from tqdm import tqdm

    progress.configure(quiet=False)                            # a CLI test earlier in the session may have left --quiet on

    tty, log = Tty(), io.StringIO()
    live = progress.bar(range(3), desc="x", file=tty)
    assert isinstance(live, tqdm) and list(live) == [0, 1, 2] and "\r" in tty.getvalue()
    plain = progress.bar(range(3), desc="x", file=log)
    assert isinstance(plain, LineProgress) and list(plain) == [0, 1, 2] and len(_records(log.getvalue())) == 3
    for quiet, disable in ((True, False), (False, True)):
        progress.configure(quiet=quiet)
        try:
            f = Tty()
            assert list(progress.bar(range(30), desc="q", file=f, disable=disable)) == list(range(30))
            assert f.getvalue() == ""
        finally:
            progress.configure(quiet=False)
