"""``lstmgen chat``: type a seed, watch the continuation come, change the
sampling settings as you go. A door like the CLI: it uses only what
``lstmgen`` exports."""

from __future__ import annotations

import dataclasses
import difflib
import signal
import sys
from pathlib import Path
from typing import Callable, TextIO

import lstmgen

HELP = """\
Type a seed and press Enter: the model continues it. Ctrl-C stops the text, Ctrl-D quits.
An item model (names, titles, sentences) writes one item and stops at its end; Enter alone starts one from nothing.
  /continue [N]       go on from where the text stopped (N tokens; default max_new_tokens; the next item)
  /set NAME VALUE     change a sampling setting, e.g. /set temperature 0.5 (also NAME=VALUE)
  /show               the settings; * marks those changed from the start
  /reset              forget the text and go back to the starting settings
  /help               this text
  /quit               leave (as Ctrl-D)"""

# Chat shows one text; several samples are lstmgen generate's --num-samples.
_NOT_SETTABLE = ("num_samples",)


class Chat:
    """The chat's state and commands, apart from the terminal: ``handle``
    takes one typed line and writes to ``out``."""

    def __init__(self, model, config, out: TextIO, warn: Callable[[str], None]):
        self.model, self.out, self.warn = model, out, warn
        self.start_config = self.config = config
        self.fields = {f.name: f for f in lstmgen.config_fields(lstmgen.SampleConfig) if f.name not in _NOT_SETTABLE}
        self.text = None  # the Generation in progress, once a seed was typed
        self.interrupted = False

    def handle(self, line: str) -> bool:
        """Act on one line; False when the chat should end."""
        stripped = line.strip()
        if not stripped.startswith("/"):
            if stripped or self.model.items:  # an item model starts an item from nothing on an empty line
                self.seed(line)
            return True
        command, _, rest = stripped[1:].partition(" ")
        action = {"continue": self.go_on, "c": self.go_on, "set": self.set, "show": self.show,
                  "reset": self.reset, "help": self.help}.get(command)
        if command in ("quit", "exit", "q"):
            return False
        if action is None:
            self.warn(f"unknown command /{command}; /help lists the commands")
            return True
        try:
            action(rest.strip())
        except lstmgen.LstmgenError as exc:
            self.warn(str(exc))
        return True

    def seed(self, line: str) -> None:
        """Start a new text from ``line``."""
        config = self.config
        if config.seed is None:
            config = dataclasses.replace(config, seed=lstmgen.fresh_seed())
        try:
            self.text = self.model.start(line, config, warn=self.warn)
        except lstmgen.LstmgenError as exc:
            self.warn(str(exc))
            return
        self.out.write(self.text.prompt)
        self.write(self.text.pieces(final=False))

    def go_on(self, rest: str) -> None:
        if self.text is None:
            raise lstmgen.LstmgenError("nothing to continue yet: type a seed first")
        if self.model.items and all(self.text.ended):  # an item that ended is whole: the next starts fresh
            self.seed("")
            return
        count = None
        if rest:
            if not rest.isdigit() or int(rest) < 1:
                raise lstmgen.LstmgenError(f"/continue takes a number of tokens (1 or more), got {rest!r}")
            count = int(rest)
        self.write(self.text.pieces(count, final=False))

    def write(self, pieces) -> None:
        """Stream the text as it comes; Ctrl-C stops it between two tokens,
        so the state stays whole and /continue goes on from there."""
        self.interrupted = False
        previous = _catch_interrupt(self)
        last = "\n"
        try:
            for step in pieces:
                if step[0]:
                    self.out.write(step[0])
                    self.out.flush()
                    last = step[0]
                if self.interrupted:
                    break
        finally:
            _restore_interrupt(previous)
            pieces.close()
        if not last.endswith("\n"):
            self.out.write("\n")
        if self.interrupted:
            self.out.write("(stopped; /continue goes on)\n")
        self.out.flush()

    def set(self, rest: str) -> None:
        name, value = _split_setting(rest)
        field = self.fields.get(name)
        if field is None:
            raise lstmgen.LstmgenError(_unknown_setting(name, self.fields))
        new = dataclasses.replace(self.config, **{name: field.parse(value)})  # checks the value
        self.config = new
        if self.text is not None:
            self.text.reconfigure(dataclasses.replace(new, seed=self.text.config.seed))
        self.out.write(f"{name} = {_show_value(getattr(new, name))}\n")

    def show(self, rest: str = "") -> None:
        for name in self.fields:
            value = getattr(self.config, name)
            changed = "*" if value != getattr(self.start_config, name) else " "
            self.out.write(f"{changed} {name:<22} {_show_value(value)}\n")

    def reset(self, rest: str = "") -> None:
        self.config, self.text = self.start_config, None
        self.out.write("the text is forgotten and the settings are back to where they started\n")

    def help(self, rest: str = "") -> None:
        self.out.write(HELP + "\n  settings: " + ", ".join(self.fields) + "\n")


def _split_setting(rest: str) -> tuple[str, str]:
    name, eq, value = rest.partition("=")
    if not eq:
        name, _, value = rest.partition(" ")
    name, value = name.strip().replace("-", "_"), value.strip()
    if not name or not value:
        raise lstmgen.LstmgenError("/set takes a setting and a value, e.g. /set temperature 0.5")
    return name, value


def _unknown_setting(name: str, fields: dict) -> str:
    if name in _NOT_SETTABLE:
        return f"chat shows one text at a time; for several, use lstmgen generate --{name.replace('_', '-')}"
    close = difflib.get_close_matches(name, list(fields), n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    return f"no setting {name!r}; {hint}/show lists them"


def _show_value(value) -> str:
    if isinstance(value, tuple):
        return ", ".join(map(repr, value)) if value else "(none)"
    return "none" if value is None else repr(value) if isinstance(value, str) else str(value)


def _catch_interrupt(chat: Chat):
    def stop(signum, frame):
        chat.interrupted = True
    try:
        return signal.signal(signal.SIGINT, stop)
    except ValueError:  # not the main thread: Ctrl-C is not ours to catch
        return None


def _restore_interrupt(previous) -> None:
    if previous is not None:
        signal.signal(signal.SIGINT, previous)


def run_chat(model, config, out: TextIO = sys.stdout, warn: Callable[[str], None] | None = None) -> int:
    """The interactive loop: prompt_toolkit's line editing and history on a
    terminal, plain lines from a pipe."""
    warn = warn or (lambda line: print(f"lstmgen: {line}", file=sys.stderr, flush=True))
    chat = Chat(model, config, out, warn)
    read = _terminal_reader() if sys.stdin.isatty() and out.isatty() else _pipe_reader()
    if read.__name__ == "terminal":
        out.write(f"lstmgen chat: {model.path}. /help for commands, Ctrl-D to quit.\n")
    while True:
        try:
            line = read()
        except KeyboardInterrupt:  # Ctrl-C at the prompt clears the line, as in a shell
            continue
        except EOFError:
            break
        if not chat.handle(line):
            break
    return 0


def _terminal_reader():
    try:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory, InMemoryHistory
    except ImportError:
        raise lstmgen.LstmgenError("lstmgen chat needs prompt_toolkit: pip install prompt_toolkit") from None
    history = InMemoryHistory()
    path = _history_path()
    if path is not None:
        history = FileHistory(str(path))
    session = PromptSession(history=history)

    def terminal() -> str:
        return session.prompt("> ")
    return terminal


def _pipe_reader():
    def pipe() -> str:
        line = sys.stdin.readline()
        if not line:
            raise EOFError
        return line.rstrip("\n")
    return pipe


def _history_path() -> Path | None:
    """~/.cache/lstmgen/chat-history (or $XDG_CACHE_HOME), when it can be written."""
    import os

    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lstmgen"
    try:
        base.mkdir(parents=True, exist_ok=True)
        path = base / "chat-history"
        path.touch()
        return path
    except OSError:
        return None
