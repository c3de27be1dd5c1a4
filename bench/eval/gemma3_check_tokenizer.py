#!/usr/bin/env python3
"""Checks the C SentencePiece tokenizer of `stem eval` (Gemma 3) against
Google's `sentencepiece` (C++), given a model built from the GGUF's own
vocabulary: pieces, scores and types, BPE, byte fallback, no dummy prefix,
no whitespace folding, identity normalisation. BOS is prepended to the
reference ids as the GGUF asks (add_bos_token).
Known difference: runs of spaces that are user-defined pieces ("  " ... 31
spaces, literal, not U+2581) are cut from the raw text by the C tokenizer, as
llama.cpp does; the proto-built sentencepiece escapes the spaces first and
never matches them, so texts with double spaces (Persuasion) differ there.
usage: gemma3_check_tokenizer.py MODEL.gguf TEXT IDS.npy  (IDS from `stem eval --dump-ids`)
       gemma3_check_tokenizer.py MODEL.gguf --stress [LINE]  (prints the reference ids)
needs: numpy, gguf, sentencepiece (protobuf comes with it)"""
import sys

import numpy as np
import sentencepiece as spm
from gguf import GGUFReader
from sentencepiece import sentencepiece_model_pb2 as pb


def build(model_path):
    r = GGUFReader(model_path)
    tokens = r.fields["tokenizer.ggml.tokens"].contents()
    scores = r.fields["tokenizer.ggml.scores"].contents()
    types = r.fields["tokenizer.ggml.token_type"].contents()
    m = pb.ModelProto()
    m.trainer_spec.model_type = pb.TrainerSpec.BPE
    m.trainer_spec.byte_fallback = True
    m.trainer_spec.vocab_size = len(tokens)
    m.trainer_spec.unk_id = int(r.fields["tokenizer.ggml.unknown_token_id"].contents())
    m.trainer_spec.bos_id = int(r.fields["tokenizer.ggml.bos_token_id"].contents())
    m.trainer_spec.eos_id = int(r.fields["tokenizer.ggml.eos_token_id"].contents())
    m.trainer_spec.pad_id = int(r.fields["tokenizer.ggml.padding_token_id"].contents())
    m.normalizer_spec.name = "identity"
    m.normalizer_spec.add_dummy_prefix = False
    m.normalizer_spec.remove_extra_whitespaces = False
    m.normalizer_spec.escape_whitespaces = True
    kind = {1: pb.ModelProto.SentencePiece.NORMAL, 2: pb.ModelProto.SentencePiece.UNKNOWN,
            3: pb.ModelProto.SentencePiece.CONTROL, 4: pb.ModelProto.SentencePiece.USER_DEFINED,
            5: pb.ModelProto.SentencePiece.UNUSED, 6: pb.ModelProto.SentencePiece.BYTE}
    for t, s, y in zip(tokens, scores, types):
        p = m.pieces.add()
        p.piece, p.score, p.type = t, float(s), kind[int(y)]
    sp = spm.SentencePieceProcessor()
    sp.LoadFromSerializedProto(m.SerializeToString())
    return sp, m.trainer_spec.bos_id


def main():
    sp, bos = build(sys.argv[1])
    if sys.argv[2] == "--stress":
        print(sp.encode(sys.argv[3] if len(sys.argv) > 3 else "a  b\n\n c\té 12,345 don't"))
        return
    text = open(sys.argv[2], encoding="utf-8", newline="").read()
    ref = [bos] + sp.encode(text)
    got = np.load(sys.argv[3]).tolist()
    first = next((i for i, (a, b) in enumerate(zip(ref, got)) if a != b), None)
    same = ref == got
    print(f"{sys.argv[2]}: sentencepiece {len(ref)} ids, C {len(got)} ids, "
          f"{'IDENTICAL' if same else 'DIFFER'}"
          + ("" if same else f", first difference at {first}: "
             f"ref {ref[first:first + 8] if first is not None else ''} "
             f"C {got[first:first + 8] if first is not None else ''}"))
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
