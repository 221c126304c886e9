import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lstmgen.text.batches import StreamBatches, WindowBatches, load_split, save_split
from lstmgen.errors import LstmgenError
from lstmgen.text.tokenizer import CharTokenizer, id_dtype


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1))
def test_encode_decode_round_trip(text):
    tok = CharTokenizer.from_text(text)
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert ids.dtype == id_dtype(tok.vocab_size)
    # The vocabulary survives its JSON form.
    again = CharTokenizer.from_dict(tok.to_dict())
    assert again.decode(again.encode(text)) == text


def test_id_dtype_is_the_smallest_that_fits():
    assert id_dtype(256) == np.uint8
    assert id_dtype(257) == np.uint16
    assert id_dtype(65_536) == np.uint16
    assert id_dtype(65_537) == np.uint32
    text = "".join(chr(0x4E00 + i) for i in range(300))
    assert CharTokenizer.from_text(text).encode(text).dtype == np.uint16


def test_unknown_characters_are_replaced_or_dropped_and_reported():
    tok = CharTokenizer.from_text("abc 'e\n")
    known, report = tok.make_known("a’b€c é")
    assert known == "a'bc e"
    assert report.replaced == {"’": "'", "é": "e"}
    assert report.dropped == {"€": 1}
    assert "not in the model's vocabulary" in report.describe()
    with pytest.raises(LstmgenError, match="not in the vocabulary"):
        tok.encode("x")


def test_split_is_contiguous_and_memory_mapped(tmp_path):
    ids = np.arange(1000, dtype=np.uint16)
    split = save_split(tmp_path, ids, 0.1, {})
    assert isinstance(split.train, np.memmap)
    assert split.train.dtype == np.uint16
    np.testing.assert_array_equal(split.train, ids[:900])
    np.testing.assert_array_equal(split.val, ids[900:])
    np.testing.assert_array_equal(load_split(tmp_path).val, ids[900:])
    assert (tmp_path / "train.bin").stat().st_size == 900 * 2


def test_stream_batches_continue_each_column_across_steps():
    ids = np.arange(101, dtype=np.uint8)
    batches = StreamBatches(ids, batch_size=4, seq_len=5)
    assert batches.column_len == 25 and len(batches) == 5
    x0, y0 = batches.batch(0)
    x1, y1 = batches.batch(1)
    assert x0.shape == (4, 5)
    np.testing.assert_array_equal(x0[:, 0], [0, 25, 50, 75])
    np.testing.assert_array_equal(y0, x0 + 1)  # targets are the next token, at every position
    np.testing.assert_array_equal(x1[:, 0], x0[:, -1] + 1)  # step 1 continues step 0, row by row
    covered = np.concatenate([np.concatenate([batches.batch(s)[0][b] for s in range(5)]) for b in range(4)])
    np.testing.assert_array_equal(covered, np.arange(100))  # every input once, in order


def test_window_batches_are_the_tutorials_windows():
    ids = np.arange(50, dtype=np.uint8)
    batches = WindowBatches(ids, batch_size=8, window=10, rng=np.random.default_rng(0))
    assert batches.num_windows == 40 and len(batches) == 5
    seen = []
    for x, y in batches:
        assert x.shape[1] == 10
        np.testing.assert_array_equal(y, x[:, -1] + 1)
        seen.extend(x[:, 0].tolist())
    assert sorted(seen) == list(range(40))  # every window once per epoch


def test_too_short_for_a_batch():
    with pytest.raises(LstmgenError, match="too short"):
        StreamBatches(np.arange(10, dtype=np.uint8), batch_size=4, seq_len=5)
