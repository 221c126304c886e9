"""Text to tokens: reading any corpus (encodings, Gutenberg), tokenizers, prepare, token files and batches."""
