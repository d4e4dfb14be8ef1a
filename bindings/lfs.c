/* bindings/lfs.c: rill.fs: file readers and writers as streams, read_file, write_file, stat. */
#include <stdlib.h>
#include <string.h>

#include "file.h"
#include "lrill.h"

static rill_loop_t *loop_of(lua_State *L) {
  return &rill__ctx(L)->loop;
}

static void check_opts(lua_State *L, int idx) {
  if (!lua_isnoneornil(L, idx)) luaL_checktype(L, idx, LUA_TTABLE);
}

/* fs.reader(path [, {start, stop, chunk_size, follow, poll_ms, high_water_mark}]) */
static int l_reader(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  check_opts(L, 2);
  rill_file_read_opts_t o = RILL_FILE_READ_OPTS_INIT;
  o.start = rill__opt_int(L, 2, "start", 1);
  o.stop = rill__opt_int(L, 2, "stop", -1);
  o.chunk_size = (size_t)rill__opt_range(L, 2, "chunk_size", 0, 0, 1 << 30);
  o.follow = rill__opt_bool(L, 2, "follow", 0);
  o.poll_ms = (unsigned)rill__opt_range(L, 2, "poll_ms", 0, 0, 3600000);
  o.hwm = (size_t)rill__opt_range(L, 2, "high_water_mark", 0, 0, LUA_MAXINTEGER);
  rill_stream_t *s;
  int r = rill_file_reader_new(loop_of(L), path, &o, &s);
  if (r) return luaL_error(L, "fs.reader: %s", rill_strerror(r));
  rill__pushstream(L, s);
  return 1;
}

/* fs.writer(path [, {append, mode, exclusive, high_water_mark}]) */
static int l_writer(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  check_opts(L, 2);
  rill_file_write_opts_t o = RILL_FILE_WRITE_OPTS_INIT;
  o.append = rill__opt_bool(L, 2, "append", 0);
  o.exclusive = rill__opt_bool(L, 2, "exclusive", 0);
  o.mode = (int)rill__opt_range(L, 2, "mode", 0666, 0, 07777);
  o.hwm = (size_t)rill__opt_range(L, 2, "high_water_mark", 0, 0, LUA_MAXINTEGER);
  rill_stream_t *s;
  int r = rill_file_writer_new(loop_of(L), path, &o, &s);
  if (r) return luaL_error(L, "fs.writer: %s", rill_strerror(r));
  rill__pushstream(L, s);
  return 1;
}

/* ---- waiting calls: the callback pushes the results onto the task and wakes it ---- */

static int push_fail(lua_State *T, rill_err_t *err) {
  lua_pushnil(T);
  rill__pusherr(T, err->code, err->syscall, err->path);
  return 2;
}

static void read_file_cb(rill_err_t *err, rill_view_t *data, void *arg) {
  lua_State *T = arg;
  if (err) {
    rill__task_wake(T, push_fail(T, err));
    return;
  }
  rill__pushbuffer(T, data);
  rill__task_wake(T, 1);
}

static void write_file_cb(rill_err_t *err, void *arg) {
  lua_State *T = arg;
  if (err) {
    rill__task_wake(T, push_fail(T, err));
    return;
  }
  lua_pushboolean(T, 1);
  rill__task_wake(T, 1);
}

static const char *type_name(int t) {
  switch (t) {
    case 'f':
      return "file";
    case 'd':
      return "directory";
    case 'l':
      return "link";
    case 'c':
      return "char_device";
    case 'b':
      return "block_device";
    case 'p':
      return "fifo";
    case 's':
      return "socket";
    default:
      return "unknown";
  }
}

static void stat_cb(rill_err_t *err, const rill_stat_t *st, void *arg) {
  lua_State *T = arg;
  if (err) {
    rill__task_wake(T, push_fail(T, err));
    return;
  }
  lua_createtable(T, 0, 14);
  lua_pushinteger(T, (lua_Integer)st->size);
  lua_setfield(T, -2, "size");
  lua_pushinteger(T, (lua_Integer)st->mode);
  lua_setfield(T, -2, "mode");
  lua_pushinteger(T, (lua_Integer)st->uid);
  lua_setfield(T, -2, "uid");
  lua_pushinteger(T, (lua_Integer)st->gid);
  lua_setfield(T, -2, "gid");
  lua_pushinteger(T, (lua_Integer)st->nlink);
  lua_setfield(T, -2, "nlink");
  lua_pushinteger(T, (lua_Integer)st->ino);
  lua_setfield(T, -2, "ino");
  lua_pushinteger(T, (lua_Integer)st->dev);
  lua_setfield(T, -2, "dev");
  lua_pushnumber(T, st->atime);
  lua_setfield(T, -2, "atime");
  lua_pushnumber(T, st->mtime);
  lua_setfield(T, -2, "mtime");
  lua_pushnumber(T, st->ctime);
  lua_setfield(T, -2, "ctime");
  lua_pushstring(T, type_name(st->type));
  lua_setfield(T, -2, "type");
  lua_pushboolean(T, st->type == 'f');
  lua_setfield(T, -2, "is_file");
  lua_pushboolean(T, st->type == 'd');
  lua_setfield(T, -2, "is_directory");
  rill__task_wake(T, 1);
}

/* fs.read_file(path): in a task, a buffer with the whole file, or nil, err. */
static int l_read_file(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  rill__task_check(L, "read_file");
  int r = rill_fs_read_file(loop_of(L), path, read_file_cb, L);
  if (r) return rill__fail(L, r, "open", path);
  return rill__task_wait(L);
}

/* fs.write_file(path, data [, {append}]): in a task, true or nil, err. */
static int l_write_file(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  size_t len;
  rill_view_t tmp = {NULL, 0, 0}, *v = rill__tobuffer(L, 2);
  const char *p = v ? NULL : rill__checkbytes(L, 2, &len);
  check_opts(L, 3);
  int append = rill__opt_bool(L, 3, "append", 0);
  rill__task_check(L, "write_file");
  if (v == NULL) {
    if (len && rill_view_from(&tmp, p, len) != 0) return luaL_error(L, "not enough memory");
    v = &tmp;
  }
  int r = rill_fs_write_file(loop_of(L), path, v, append, write_file_cb, L);
  rill_view_release(&tmp);
  if (r) return rill__fail(L, r, "open", path);
  return rill__task_wait(L);
}

/* fs.stat(path) / fs.lstat(path): in a task, a table, or nil, err. */
static int do_stat(lua_State *L, int lstat, const char *fname) {
  const char *path = luaL_checkstring(L, 1);
  rill__task_check(L, fname);
  int r = rill_fs_stat(loop_of(L), path, lstat, stat_cb, L);
  if (r) return rill__fail(L, r, lstat ? "lstat" : "stat", path);
  return rill__task_wait(L);
}

static int l_stat(lua_State *L) {
  return do_stat(L, 0, "stat");
}

static int l_lstat(lua_State *L) {
  return do_stat(L, 1, "lstat");
}

static const luaL_Reg funcs[] = {
    {"reader", l_reader},
    {"writer", l_writer},
    {"read_file", l_read_file},
    {"write_file", l_write_file},
    {"stat", l_stat},
    {"lstat", l_lstat},
    {NULL, NULL},
};

int rill__open_fs(lua_State *L) {
  rill__ctx(L);
  rill__require_streams(L);
  luaL_newlib(L, funcs);
  return 1;
}
