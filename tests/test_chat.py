"""lstmgen chat: through a real pseudo-terminal (pexpect), and its commands
one by one through the Chat object."""

import io
import os
import sys

import pytest

import lstmgen
from lstmgen.chat import Chat


@pytest.fixture(scope="module")
def bundled():
    return lstmgen.load()


def make_chat(bundled, **settings):
    out, warnings = io.StringIO(), []
    config = lstmgen.SampleConfig(**dict(dict(max_new_tokens=60, seed=5), **settings))
    return Chat(bundled, config, out, warnings.append), out, warnings


def test_a_seed_line_streams_its_continuation_and_continue_goes_on_without_rereading(bundled):
    chat, out, warnings = make_chat(bundled)
    assert chat.handle("Alice was")
    first = out.getvalue()
    assert first.startswith("Alice was") and len(first) > len("Alice was") + 30
    assert chat.handle("/continue 40")
    assert not warnings
    # One text of 60 + 40 tokens, the same as generating 100 at once with the same seed.
    whole = bundled.generate("Alice was", lstmgen.SampleConfig(max_new_tokens=100, seed=5))[0]
    shown = out.getvalue()
    assert shown.replace("\n", "") == ("Alice was" + whole).replace("\n", "")


def test_set_changes_the_next_tokens_and_show_marks_it(bundled):
    chat, out, warnings = make_chat(bundled)
    chat.handle("/set temperature 0")
    chat.handle("/set max_new_tokens=30")
    assert "temperature = 0.0" in out.getvalue()
    out.truncate(0), out.seek(0)
    chat.handle("/show")
    shown = out.getvalue()
    assert "* temperature" in shown and "* max_new_tokens" in shown and "  top_k" in shown
    out.truncate(0), out.seek(0)
    chat.handle("the queen")
    argmax = bundled.generate("the queen", lstmgen.SampleConfig(max_new_tokens=30, temperature=0))[0]
    assert out.getvalue() == "the queen" + argmax + ("" if argmax.endswith("\n") else "\n")
    assert not warnings


def test_set_in_the_middle_of_a_text_applies_to_the_rest(bundled):
    chat, out, warnings = make_chat(bundled)
    chat.handle("Alice")
    chat.handle("/set temperature 0")
    out.truncate(0), out.seek(0)
    chat.handle("/continue 30")
    again, _, _ = make_chat(bundled)
    again.handle("Alice")
    again.handle("/set temperature 0")
    again.out.truncate(0), again.out.seek(0)
    again.handle("/continue 30")
    assert out.getvalue() == again.out.getvalue()  # argmax from the same state: the same text


@pytest.mark.parametrize("line, needle", [
    ("/set temprature 1", "did you mean temperature"),
    ("/set temperature -1", "--temperature must be 0"),
    ("/set top_k many", "--top-k takes a whole number"),
    ("/set temperature", "/set takes a setting and a value"),
    ("/set num_samples 4", "lstmgen generate --num-samples"),
    ("/continue", "type a seed first"),
    ("/frobnicate", "/help lists the commands"),
])
def test_bad_commands_get_one_line_and_the_chat_goes_on(bundled, line, needle):
    chat, out, warnings = make_chat(bundled)
    assert chat.handle(line) is True
    assert len(warnings) == 1 and needle in warnings[0], warnings


def test_continue_takes_a_positive_count(bundled):
    chat, out, warnings = make_chat(bundled)
    chat.handle("Alice")
    chat.handle("/continue abc")
    chat.handle("/continue 0")
    assert len(warnings) == 2 and all("/continue takes a number of tokens" in w for w in warnings)


def test_reset_forgets_the_text_and_the_settings(bundled):
    chat, out, warnings = make_chat(bundled)
    chat.handle("Alice")
    chat.handle("/set temperature 0.2")
    chat.handle("/reset")
    assert chat.config == chat.start_config and chat.text is None
    assert chat.handle("/quit") is False


# prompt_toolkit draws the "> " prompt after resetting the colours, and moves
# the cursor instead of writing the space; model text never holds an escape.
PROMPT = "\x1b[0m>"


def test_chat_through_a_real_terminal(tmp_path):
    """Type a seed, see text stream, Ctrl-C in the middle, change a setting, quit with Ctrl-D."""
    pexpect = pytest.importorskip("pexpect", reason="pip install -e '.[test]' installs pexpect")
    env = dict(os.environ, PROMPT_TOOLKIT_NO_CPR="1", TERM="xterm", XDG_CACHE_HOME=str(tmp_path))
    child = pexpect.spawn(sys.executable, ["-m", "lstmgen", "chat", "--seed", "3", "--max-new-tokens", "10000000"],
                          env=env, encoding="utf-8", timeout=60, dimensions=(40, 200))
    try:
        child.expect("/help for commands")
        child.expect_exact(PROMPT)
        child.sendline("Alice was")
        child.expect("Alice was")
        child.expect(r"\w+ \w+ \w+")  # text is streaming
        child.sendintr()  # Ctrl-C: stops the text, not the chat
        child.expect(r"\(stopped; /continue goes on\)")
        child.expect_exact(PROMPT)
        child.sendline("/set temperature 0.5")
        child.expect("temperature = 0.5")
        child.expect_exact(PROMPT)
        child.sendline("/show")
        child.expect(r"\* temperature +0.5")
        child.expect_exact(PROMPT)
        child.sendline("/set max_new_tokens 20")
        child.expect_exact(PROMPT)
        child.sendline("/continue")
        child.expect_exact(PROMPT)
        child.sendcontrol("d")  # Ctrl-D quits
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0, child.before
    assert (tmp_path / "lstmgen" / "chat-history").read_text().count("/set temperature 0.5") == 1
