/* core/error.c: names and messages of engine error codes, falling back to libuv's. */
#include "error.h"

#include <uv.h>

#define IS_RILL(e) ((e) > RILL_ERRNO_BASE && (e) < RILL__ERRNO_LAST)

const char *rill_err_name(int err) {
  switch (err) {
#define XX(name, code, msg) \
  case RILL_E##name:        \
    return code;
    RILL_ERRNO_MAP(XX)
#undef XX
  }
  return uv_err_name(err);
}

const char *rill_strerror(int err) {
  switch (err) {
#define XX(name, code, msg) \
  case RILL_E##name:        \
    return msg;
    RILL_ERRNO_MAP(XX)
#undef XX
  }
  return uv_strerror(err);
}
