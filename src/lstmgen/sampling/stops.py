"""Stop strings: a sample ends at the first occurrence of any of them, also
when it spans several tokens. Text that might be the start of a stop string
is held back until the next token shows whether it is."""

from __future__ import annotations

from .config import SampleConfig


class StopText:
    """One sample's text on its way out: ``push`` takes each decoded piece
    and returns what may be shown now; ``done`` once a stop string was met."""

    def __init__(self, config: SampleConfig):
        self.stops, self.include = config.stop, config.include_stop
        self.min_tokens = config.min_new_tokens
        self.longest = max((len(s) for s in self.stops), default=0)
        self.tokens = 0
        self.tail = ""  # the end of what was already shown, for stops that began there
        self.pending = ""  # held back: it may be the start of a stop string
        self.done = False

    def push(self, piece: str) -> str:
        if self.done:
            return ""
        self.tokens += 1
        if not self.stops:
            return piece
        text = self.pending + piece
        if self.tokens < self.min_tokens:  # too early to stop: show everything
            return self._show(text)
        found = self._first_stop(self.tail + text)
        if found is not None:
            start, end = found
            self.done = True
            cut = (end if self.include else start) - len(self.tail)
            return text[:max(cut, 0)]
        held = self._unfinished(text)
        return self._show(text[:len(text) - held], text[len(text) - held:])

    def flush(self) -> str:
        out, self.pending = ("" if self.done else self.pending), ""
        return out

    def _show(self, text: str, held: str = "") -> str:
        self.pending = held
        self.tail = (self.tail + text)[-self.longest:] if self.longest > 1 else ""
        return text

    def _first_stop(self, text: str) -> tuple[int, int] | None:
        """(start, end) of the earliest stop string that ends in the new text."""
        best = None
        for stop in self.stops:
            i = text.find(stop, max(len(self.tail) - len(stop) + 1, 0))
            if i >= 0 and (best is None or i < best[0]):
                best = (i, i + len(stop))
        return best

    def _unfinished(self, text: str) -> int:
        """Length of the longest end of ``text`` that begins a stop string."""
        for n in range(min(len(text), self.longest - 1), 0, -1):
            if any(stop.startswith(text[-n:]) for stop in self.stops):
                return n
        return 0
