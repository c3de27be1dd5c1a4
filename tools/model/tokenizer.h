/* GPT-2 style byte-level BPE tokenizer built from GGUF metadata
 * (tokenizer.ggml.tokens + tokenizer.ggml.merges), with the SmolLM
 * pre-tokenizer: every digit alone, then the GPT-2 split regex. */
#ifndef STEM_MODEL_TOKENIZER_H
#define STEM_MODEL_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"

typedef struct bpe_tokenizer bpe_tokenizer;

/* 0 on success; err gets the reason otherwise. */
int bpe_tokenizer_load(const gguf_file *f, bpe_tokenizer **out, char *err, size_t err_len);
void bpe_tokenizer_free(bpe_tokenizer *t);
int32_t bpe_vocab_size(const bpe_tokenizer *t);
/* Encodes len bytes of UTF-8 text; returns the number of tokens (which may
 * exceed cap: then only cap were written), or -1 when out of memory. */
int64_t bpe_encode(const bpe_tokenizer *t, const char *text, size_t len, int32_t *ids,
                   int64_t cap);
/* Appends the bytes of one token to out (at most cap - 1, NUL-terminated);
 * returns the byte count. */
size_t bpe_decode_token(const bpe_tokenizer *t, int32_t id, char *out, size_t cap);

#endif
