#!/usr/bin/env python3
"""Writes a passkey-retrieval prompt for `stem eval --model gemma3`: Austen
prose as filler (the three committed texts, in turn), a five-digit key
stated once at a relative depth, and at the end the question followed by
the key again. Gemma tokenises digits one by one, so the window's last five
tokens are the key digits: score them with --score-from (ids - 6), see
bench/eval/gemma3_passkey.sh.
usage: gemma3_passkey.py TOKENS DEPTH KEY OUT.txt   (TOKENS an upper bound: ~3.8 chars a token)"""
import sys

TEXTS = ["data/austen/prideprejudice.txt", "data/austen/emma.txt", "data/austen/persuasion.txt"]


def main():
    tokens, depth, key, out = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4]
    assert len(key) == 5 and key.isdigit() and 0.0 <= depth <= 1.0
    filler = "\n\n".join(open(p, encoding="utf-8").read() for p in TEXTS)
    needle = f"\n\nThe pass key is {key}. Remember it. {key} is the pass key.\n\n"
    question = "\n\nWhat is the pass key? The pass key is " + key
    chars = int(tokens * 3.8) - len(needle) - len(question)
    if chars > len(filler):
        sys.exit(f"gemma3_passkey: {tokens} tokens need more filler than the texts hold")
    body = filler[:chars]
    cut = body.rfind(". ", 0, int(depth * chars)) + 2 if depth > 0 else 0  # at a sentence end
    open(out, "w", encoding="utf-8").write(body[:cut] + needle + body[cut:] + question)


if __name__ == "__main__":
    main()
