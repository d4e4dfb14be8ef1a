/* bindings/lprogress.c: rill._progress: stream.progress, the native progress-bar pass-through. */
#include "lrill.h"
#include "progress.h"

/* new([{total, label, force, interval_ms, width}]) -> stream */
static int l_new(lua_State *L) {
  rill_ctx_t *ctx = rill__ctx(L);
  if (!lua_isnoneornil(L, 1)) luaL_checktype(L, 1, LUA_TTABLE);
  rill_progress_opts_t o = RILL_PROGRESS_OPTS_INIT;
  o.total = (uint64_t)rill__opt_range(L, 1, "total", 0, 0, LUA_MAXINTEGER);
  o.label = rill__opt_str(L, 1, "label", NULL);
  o.force = rill__opt_bool(L, 1, "force", 0);
  o.interval_ms = (unsigned)rill__opt_range(L, 1, "interval_ms", 0, 0, 3600000);
  o.width = (unsigned)rill__opt_range(L, 1, "width", 0, 0, 1000);
  rill_stream_t *s;
  int r = rill_progress_new(&ctx->loop, &o, &s);
  if (r) return luaL_error(L, "progress: %s", rill_strerror(r));
  rill__pushstream(L, s);
  return 1;
}

int rill__open_progress(lua_State *L) {
  rill__ctx(L);
  rill__require_streams(L);
  lua_newtable(L);
  lua_pushcfunction(L, l_new);
  lua_setfield(L, -2, "new");
  return 1;
}
