/* core/codec.h: hex, base64 and base64url encoders and strict decoders, one-shot and streaming. */
#ifndef RILL_CODEC_H
#define RILL_CODEC_H

#include <stddef.h>

/* Byte encodings, as named in scripts ("binary" is the bytes as they are). */
typedef enum {
  RILL_ENC_BINARY,
  RILL_ENC_HEX,
  RILL_ENC_BASE64,
  RILL_ENC_BASE64URL,
} rill_encoding_t;

/* The encoding called name (len bytes), or -1 for an unknown name. */
int rill_encoding_find(const char *name, size_t len);
/* The script-visible name of enc ("hex"), never NULL. */
const char *rill_encoding_name(rill_encoding_t enc);

/* Encoders never fail: they write exactly the encoded length and return it.
 * hex: lowercase, 2 characters per byte. base64: RFC 4648 section 4 alphabet with "=" padding.
 * base64url: RFC 4648 section 5 alphabet ("-", "_") without padding, as Node.js writes it. */
size_t rill_hex_encode(char *dst, const unsigned char *src, size_t n);
size_t rill_base64_encode(char *dst, const unsigned char *src, size_t n, int url);

/* Decoders are strict and never write more than rill_decoded_max bytes. They return 0 with the
 * decoded length in *out, or RILL_EINVALID_ENCODING when the input is not exactly an encoding
 * (dst then holds garbage). Rejected: for hex, an odd length or a non-hex character (either case
 * is fine); for base64, any character outside the alphabet (including whitespace and line
 * breaks, and the other alphabet's "-_" or "+/"), "=" anywhere but at the end, a length that is
 * not a multiple of 4 (base64url: padding is optional, but a length of 4k+1 is never valid),
 * more than two "=", and non-zero bits in the last character before the padding (so each byte
 * string has exactly one accepted encoding, padding aside for base64url). */
int rill_hex_decode(unsigned char *dst, const char *src, size_t n, size_t *out);
int rill_base64_decode(unsigned char *dst, const char *src, size_t n, int url, size_t *out);

/* Dispatch on an encoding (RILL_ENC_BINARY copies). */
/* The encoded length of n bytes in *out; 0, or UV_ENOMEM if it does not fit in a size_t. */
int rill_encoded_len(rill_encoding_t enc, size_t n, size_t *out);
size_t rill_encode(rill_encoding_t enc, char *dst, const unsigned char *src, size_t n);
/* An upper bound of the decoded length of n characters (never more than n). */
size_t rill_decoded_max(rill_encoding_t enc, size_t n);
int rill_decode(rill_encoding_t enc, unsigned char *dst, const char *src, size_t n, size_t *out);

/* Streaming: the output does not depend on how the input is cut into pieces, and equals the
 * one-shot result (padding only at the end). Encoding: each update writes at most
 * rill_encoded_len(n + 2) bytes, end writes at most 4. Decoding: each update writes at most
 * rill_decoded_max(n + 3) bytes, end at most 3; an error is sticky (every later call fails). */
typedef struct {
  rill_encoding_t enc;
  unsigned char carry[4]; /* bytes (encoding) or characters (decoding) waiting for a full group */
  unsigned char ncarry;
  unsigned char done; /* decoding: a padded group was seen; nothing may follow */
  unsigned char failed;
} rill_codec_t;

void rill_codec_init(rill_codec_t *c, rill_encoding_t enc);
/* Returns the number of characters written to dst. */
size_t rill_codec_encode(rill_codec_t *c, char *dst, const unsigned char *src, size_t n);
size_t rill_codec_encode_end(rill_codec_t *c, char *dst);
/* 0 with the number of bytes written in *out, or RILL_EINVALID_ENCODING. */
int rill_codec_decode(rill_codec_t *c, unsigned char *dst, const char *src, size_t n, size_t *out);
int rill_codec_decode_end(rill_codec_t *c, unsigned char *dst, size_t *out);

#endif
