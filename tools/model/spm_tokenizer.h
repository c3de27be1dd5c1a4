/* SentencePiece-style tokenizer (GGUF tokenizer.ggml.model = "llama", as
 * Gemma's): user-defined tokens cut out of the raw text first, spaces
 * escaped to U+2581, no dummy prefix, then adjacent symbols merged by the
 * highest token score, byte-fallback tokens <0xXX> for what is left; the
 * BOS token first when the GGUF asks for it. */
#ifndef STEM_MODEL_SPM_TOKENIZER_H
#define STEM_MODEL_SPM_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"

typedef struct spm_tokenizer spm_tokenizer;

/* 0 on success; err gets the reason otherwise. */
int spm_tokenizer_load(const gguf_file *f, spm_tokenizer **out, char *err, size_t err_len);
void spm_tokenizer_free(spm_tokenizer *t);
int32_t spm_vocab_size(const spm_tokenizer *t);
/* Encodes len bytes of UTF-8 text; returns the number of tokens (which may
 * exceed cap: then only cap were written), or -1 when out of memory. */
int64_t spm_encode(const spm_tokenizer *t, const char *text, size_t len, int32_t *ids,
                   int64_t cap);
/* Appends the bytes of one token to out (at most cap - 1, NUL-terminated);
 * control tokens decode to nothing. Returns the byte count. */
size_t spm_decode_token(const spm_tokenizer *t, int32_t id, char *out, size_t cap);

#endif
