/* bindings/lrepl.c: the REPL's terminal: libedit line editing fed by the loop, Ctrl-C, history. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <editline/readline.h>

#include "lrill.h"
#include "stdfd.h"
#include "uvstream.h"

/* The prompt reads stdin through the loop: a uv_poll on stdin says a byte is ready, and libedit's
 * callback interface (rl_callback_read_char) consumes it, so timers, sockets and tasks keep
 * running while a line is typed. libedit's readline layer is a process-wide singleton, and so is
 * SIGINT: one REPL per process, kept in the_repl.
 *
 * Lua drives the policy (lua/rill/repl.lua): read(prompt) shows a prompt and delivers the next
 * line to on_line; running() marks the calling task as the code that Ctrl-C interrupts; on a
 * Ctrl-C that the loop gets to see, on_interrupt("prompt" | "running") decides what happens. */

/* S_LENT: the prompt would be up, but rill.stdin is reading the terminal: it waits for that to
 * stop. */
enum { S_IDLE, S_READING, S_RUNNING, S_LENT };

typedef struct repl_s {
  rill_handle_t hpoll, hasync, hprep, hwinch, hcont;
  uv_poll_t poll;    /* stdin is readable (absent when stdin is a regular file) */
  uv_async_t async;  /* the SIGINT handler wakes the loop; referenced: keeps the REPL alive */
  uv_prepare_t prep; /* redraws the prompt before the loop blocks, after output hid it */
  uv_signal_t winch; /* terminal resized */
  uv_signal_t cont;  /* resumed after Ctrl-Z: the shell has reset the terminal's modes */
  int nopen;         /* tracked handles whose close callback has not run yet */
  int detached;      /* terminal restored, SIGINT given back: teardown started */
  lua_State *L;      /* the main thread: callbacks run there */
  pthread_t owner;   /* the thread running the engine's loop */
  rill_ctx_t *ctx;
  int tty; /* line editing through libedit; otherwise plain line reading */
  int pollable, polling;
  /* Our own descriptor of stdin, watched and read instead of fd 0: libuv replaces fd 0 when
   * rill.stdin opens the terminal (it reopens it and dup2s the new one over fd 0), and a
   * watch on a descriptor replaced under it stays in epoll for good. */
  int fd;
  FILE *in_file;               /* over fd, for libedit */
  volatile sig_atomic_t state; /* S_* (read by the SIGINT handler) */
  int installed;               /* libedit's handler is installed: raw mode, prompt on screen */
  int typed;  /* a key was read since: until then libedit's rl_point and rl_end are stale */
  int hidden; /* the prompt was erased for output; redraw before blocking */
  int at_bol; /* our last output ended a line */
  int col;    /* the column where our last output left the cursor */
  /* The prompt was drawn below output that had not ended its line (at column pcol): output
   * that comes next goes on from there, so a progress bar redraws its own line ("\r"). */
  int partial, pcol;
  int stdin_flags; /* fd 0's file status flags before uv_poll_init made it non-blocking */
  char *prompt;
  char *histfile;
  int fn_line, fn_int, fn_complete, thread_ref, look_ref;
  uint64_t looked; /* the loop time find_stdin last looked (valid if looked_valid) */
  int looked_valid;
  lua_State *volatile thread;        /* the task evaluating input: Ctrl-C arms its hook */
  volatile sig_atomic_t int_pending; /* a SIGINT the loop has not handled yet */
  volatile sig_atomic_t int_state;   /* r->state when that SIGINT came */
  volatile sig_atomic_t hook_armed, hook_fired;
  volatile sig_atomic_t int_now; /* the hook interrupts at once, not after GRACE_MS */
  int64_t int_time;              /* when the first Ctrl-C not yet handled came (ms) */
  unsigned eval_seq, late_seq;   /* evaluations started; the one late_interrupt looks at */
  int late_queued, late_turns;
  volatile sig_atomic_t echoed; /* the terminal echoed "^C" where our next output would go */
  struct sigaction old_int;
  /* libedit's line callback hands the line over through these */
  char *line;
  int got_line;
  /* plain mode: bytes read but not yet delivered as lines */
  char *buf;
  size_t len, cap;
  int eof, pump_queued;
  /* rill.stdin once it exists (a reference): the terminal is its while it reads */
  rill_stream_t *in;
  /* completion candidates, while libedit asks for them */
  char **cand;
  int ncand, icand;
} repl_t;

static repl_t *the_repl;

/* ---- output, and keeping the prompt intact around it ---- */

static int columns(void) {
  struct winsize ws;
  if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  return 80;
}

/* The cursor's offset in the line, and the line's length. */
static int cur_point(repl_t *r) {
  return r->typed ? rl_point : 0;
}
static int cur_end(repl_t *r) {
  return r->typed ? rl_end : 0;
}

/* Rows between the prompt's first row and the row of input offset pos. */
static int row_of(repl_t *r, int pos) {
  return ((int)strlen(r->prompt ? r->prompt : "") + pos) / columns();
}

/* Output at the start of a fresh line. */
static void at_line_start(repl_t *r) {
  r->at_bol = 1;
  r->col = 0;
  r->partial = 0;
}

/* Follows the cursor through output s: its column (escape sequences take none, a UTF-8
 * character one) and whether it ended a line. */
static void track(repl_t *r, const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '\n' || c == '\r') {
      r->col = 0;
    } else if (c == '\b') {
      if (r->col > 0) r->col--;
    } else if (c == '\t') {
      r->col = (r->col / 8 + 1) * 8;
    } else if (c == 0x1b) {
      if (i + 1 < n && s[i + 1] == '[') { /* CSI: parameters up to a final byte */
        for (i += 2; i < n && !(s[i] >= 0x40 && s[i] <= 0x7e); i++) {
        }
      } else {
        i++;
      }
    } else if (c >= 0x20 && c != 0x7f && (c < 0x80 || c >= 0xc0)) {
      r->col++;
    }
  }
  if (n > 0) r->at_bol = s[n - 1] == '\n';
}

/* Moves to a fresh line for the prompt, remembering an unfinished line of output above it. */
static void prompt_line(repl_t *r) {
  int partial = !r->at_bol, pcol = r->col;
  if (partial) fputs("\n", stdout);
  at_line_start(r);
  r->partial = partial;
  r->pcol = pcol;
}

/* Erases the prompt and the line being typed, leaving the cursor where the prompt began. */
static void hide(repl_t *r) {
  if (!r->tty || !r->installed || r->hidden) return;
  fflush(stdout);
  int up = row_of(r, cur_point(r));
  fputs("\r", stdout);
  if (up > 0) fprintf(stdout, "\x1b[%dA", up);
  fputs("\x1b[J", stdout);
  if (r->partial) {
    /* Back to the end of the unfinished line above the prompt. */
    int col = r->pcol % columns();
    fputs("\x1b[A", stdout);
    if (col > 0) fprintf(stdout, "\x1b[%dC", col);
    r->at_bol = 0;
    r->col = r->pcol;
    r->partial = 0;
  }
  fflush(stdout);
  r->hidden = 1;
}

/* Draws the prompt and the line again (on a fresh line) after hide. */
static void redisplay(repl_t *r) {
  if (!r->hidden) return;
  r->hidden = 0;
  if (!r->installed) return;
  prompt_line(r);
  rl_forced_update_display();
  fflush(stdout);
}

/* Ends the line where the terminal echoed a Ctrl-C typed while code ran. */
static void end_echo(repl_t *r) {
  if (r == NULL || !r->echoed) return;
  r->echoed = 0;
  fputs("\n", stdout);
  at_line_start(r);
}

/* Moves the cursor after the end of the input (for "^C" and the like). */
static void goto_end(repl_t *r) {
  int cols = columns(), plen = (int)strlen(r->prompt ? r->prompt : "");
  int down = row_of(r, cur_end(r)) - row_of(r, cur_point(r)), col = (plen + cur_end(r)) % cols;
  fputs("\r", stdout);
  if (down > 0) fprintf(stdout, "\x1b[%dB", down);
  if (col > 0) fprintf(stdout, "\x1b[%dC", col);
}

/* The terminal guard (core/stdfd.h): a stdout or stderr stream is about to write to the
 * terminal from the loop (a timer, a pipeline into rill.stdout). As for print, the prompt goes
 * first and comes back before the loop waits again. */
static void guard(int fd, const struct iovec *iov, int cnt, void *arg) {
  repl_t *r = arg;
  (void)fd;
  /* Another engine's thread (a host may run several) writes without our prompt's say. */
  if (r != the_repl || !pthread_equal(pthread_self(), r->owner)) return;
  hide(r);
  end_echo(r);
  fflush(stdout); /* what C stdio holds goes out before the stream's bytes */
  for (int i = 0; i < cnt; i++) track(r, iov[i].iov_base, iov[i].iov_len);
}

/* ---- Ctrl-C ---- */

/* Ctrl-C reaches Lua code two ways. When the loop is free, the SIGINT handler only wakes it
 * (async_cb), which clears the line or abandons the evaluation. When Lua code is running, the
 * handler arms a hook, as lua.c's lstop does, in the threads that may be running it: the main
 * thread (callbacks), the evaluation's task, and the task being resumed now (a pooled worker
 * running a stream's Lua hook, say). While an evaluation runs, the hook interrupts at once. At
 * the prompt the code running is someone else's (a timer, a transform): it is interrupted only
 * if it keeps the loop from handling the Ctrl-C for GRACE_MS, so a Ctrl-C that clears a line
 * does not hit a busy but healthy callback; a second Ctrl-C before the loop got to the first
 * interrupts at once. Once the hook interrupts at once, a further Ctrl-C before the loop gets
 * to it ends the process (a long C call never reaches the hook). */

#define GRACE_MS 250
#define GRACE_COUNT 1000 /* instructions between looks at the clock */

static int64_t now_ms(void) {
  struct timespec ts; /* clock_gettime is async-signal-safe */
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void disarm(repl_t *r) {
  if (!r->hook_armed) return;
  r->hook_armed = 0;
  lua_sethook(r->L, NULL, 0, 0);
  if (r->thread) lua_sethook(r->thread, NULL, 0, 0);
  /* The task armed at the Ctrl-C is left alone: it may be gone. Its hook sees it is disarmed
   * and removes itself the next time it runs. */
}

static void lstop(lua_State *L, lua_Debug *ar) {
  (void)ar;
  repl_t *r = the_repl;
  if (r == NULL || !r->hook_armed) {
    lua_sethook(L, NULL, 0, 0); /* left over from a Ctrl-C handled since */
    return;
  }
  if (!r->int_now && now_ms() - r->int_time < GRACE_MS) return;
  lua_sethook(L, NULL, 0, 0);
  disarm(r);
  r->hook_fired = 1;
  luaL_error(L, "interrupted!");
}

static void arm(repl_t *r, lua_State *L) {
  if (L == NULL) return;
  if (r->int_now)
    lua_sethook(L, lstop, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
  else
    lua_sethook(L, lstop, LUA_MASKCOUNT, GRACE_COUNT);
}

static void on_sigint(int signo) {
  repl_t *r = the_repl;
  (void)signo;
  if (r == NULL) return;
  int again = r->int_pending;
  if (!again) r->int_state = r->state;
  if (r->state != S_READING && r->tty) {
    struct termios t; /* tcgetattr is async-signal-safe */
    if (tcgetattr(STDIN_FILENO, &t) == 0 && (t.c_lflag & (ECHO | ECHOCTL)) == (ECHO | ECHOCTL))
      r->echoed = 1;
  }
  if (!(r->hook_armed && r->int_now)) {
    r->int_now = r->state == S_RUNNING || again;
    if (!again) r->int_time = now_ms();
    r->hook_armed = 1;
    /* lua_sethook is safe in a signal handler (lua.c relies on it); new threads inherit the
     * main thread's hook. */
    arm(r, r->L);
    arm(r, r->thread);
    arm(r, r->ctx->task_now);
    /* As lua.c: should the hook never run (a long C call), the next Ctrl-C ends the process.
     * The loop puts this handler back as soon as it gets the Ctrl-C. */
    if (r->int_now) signal(SIGINT, SIG_DFL);
  }
  r->int_pending = 1;
  uv_async_send(&r->async);
}

/* Puts our SIGINT handler in place, unless a script installed its own (rill.on_signal). */
static void catch_sigint(repl_t *r) {
  struct sigaction cur, sa;
  if (sigaction(SIGINT, NULL, &cur) != 0) return;
  if (cur.sa_handler != SIG_DFL && cur.sa_handler != on_sigint) return;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  (void)r;
}

/* ---- delivering lines to Lua ---- */

static void call_lua(repl_t *r, int ref, const char *s, size_t n) {
  lua_State *L = r->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  if (s)
    lua_pushlstring(L, s, n);
  else
    lua_pushnil(L);
  rill__callback(L, 1); /* an error goes to the "uncaught" hook */
}

static void stop_polling(repl_t *r) {
  if (r->polling) uv_poll_stop(&r->poll);
  r->polling = 0;
}

static void poll_cb(uv_poll_t *p, int status, int events);

static void start_polling(repl_t *r) {
  if (r->pollable && !r->polling && !r->detached) {
    if (uv_poll_start(&r->poll, UV_READABLE, poll_cb) == 0) r->polling = 1;
  }
}

static void uninstall(repl_t *r) {
  stop_polling(r);
  if (r->installed) rl_callback_handler_remove();
  r->installed = 0;
  r->hidden = 0;
}

/* ---- rill.stdin and the terminal ----
 *
 * rill.stdin over the terminal reads it through its own handle (core/uvstream.c). Two readers
 * of one terminal would split the keys typed between them, so the terminal goes to rill.stdin
 * from its first read until it ends (Ctrl-D) or is destroyed: the prompt steps aside
 * meanwhile, the terminal in its normal mode (lines, echo, Ctrl-D), and comes back after.
 * Ctrl-C destroys rill.stdin with an "interrupted" error and brings the prompt back. */

/* Looks for rill.stdin where rill.stdio keeps it once opened, with raw accesses to values that
 * exist already (r->look_ref: {package.loaded, "rill.stdio", "stdin"}): nothing allocates, so
 * nothing raises, and the prompt can look before each wait. */
static void find_stdin(repl_t *r) {
  /* Once per millisecond of loop time at most: the prompt looks before every wait of the
   * loop, and a loop turning fast (tasks yielding with sleep(0)) would pay for it. */
  uint64_t now = uv_now(r->ctx->loop.uv);
  if (now == r->looked && r->looked_valid) return;
  r->looked = now;
  r->looked_valid = 1;
  lua_State *L = r->L;
  int top = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->look_ref);
  if (lua_istable(L, -1) && lua_rawgeti(L, -1, 1) == LUA_TTABLE) {
    lua_rawgeti(L, -2, 2);
    if (lua_rawget(L, -2) == LUA_TTABLE) { /* the module */
      lua_rawgeti(L, -3, 3);
      if (lua_rawget(L, -2) == LUA_TUSERDATA) { /* raw: its __index would open it */
        rill_stream_t *s = rill__tostream(L, -1);
        if (s && rill_uvs_of(s)) {
          rill_stream_ref(s);
          r->in = s;
        }
      }
    }
  }
  lua_settop(L, top);
}

/* Nonzero while rill.stdin over the terminal can still read it (not ended nor destroyed); with
 * now set, only when it reads it at this moment. */
static int stdin_holds(repl_t *r, int now) {
  if (r->detached) return 0;
  if (r->in == NULL && r->L) find_stdin(r); /* not opened when we last looked */
  rill_stream_t *s = r->in;
  /* The state first: the adapter of a destroyed stream may be gone. */
  if (s == NULL || (rill_stream_state(s) & (RILL_SS_DESTROYED | RILL_SS_READ_ENDED))) return 0;
  rill_uvs_t *u = rill_uvs_of(s);
  return u && (!now || uv_is_active(&u->u.handle));
}

/* The prompt steps aside for rill.stdin. */
static void lend(repl_t *r) {
  if (r->installed) {
    hide(r);
    uninstall(r);
  }
  end_echo(r);
  if (!r->at_bol) fputs("\n", stdout);
  fflush(stdout);
  fputs(
      "[rill.stdin is reading the terminal: the prompt comes back when it ends "
      "(Ctrl-D ends it, Ctrl-C interrupts it)]\n",
      stderr);
  fflush(stderr);
  at_line_start(r);
  r->state = S_LENT;
}

/* Ctrl-C: rill.stdin stops reading the terminal, failing with "interrupted". Returns 1 when it
 * was reading. */
static int take_back(repl_t *r) {
  if (!stdin_holds(r, 1)) return 0;
  rill_err_t *e = rill_err_new(UV_ECANCELED, "read", NULL, "interrupted");
  rill_stream_destroy(r->in, e);
  rill_err_unref(e);
  return 1;
}

static void line_cb(char *line);

/* Draws the prompt on a fresh line, and reads the terminal through libedit. */
static void show_prompt(repl_t *r) {
  uninstall(r);
  end_echo(r);
  prompt_line(r);
  fflush(stdout);
  fflush(stderr);
  rl_callback_handler_install(r->prompt, line_cb);
  fflush(stdout);
  r->installed = 1;
  r->typed = 0;
  r->state = S_READING;
  start_polling(r);
}

/* libedit's line callback: NULL at end of input. The line is ours to free. */
static void line_cb(char *line) {
  repl_t *r = the_repl;
  if (r == NULL) {
    free(line);
    return;
  }
  free(r->line);
  r->line = line;
  r->got_line = 1;
}

static void deliver(repl_t *r, char *line, size_t n) {
  r->state = S_IDLE;
  if (line && r->tty) at_line_start(r); /* the terminal echoed the line and its Enter */
  call_lua(r, r->fn_line, line, n);
}

static void tty_readable(repl_t *r, int status) {
  int avail = 0;
  if (!r->installed) {
    stop_polling(r);
    return;
  }
  /* A hung-up terminal polls readable with nothing to read: that is the end of input. */
  if (status < 0 || ioctl(r->fd, FIONREAD, &avail) != 0 || avail == 0) {
    uninstall(r);
    deliver(r, NULL, 0);
    return;
  }
  redisplay(r);
  r->got_line = 0;
  r->typed = 1;
  rl_callback_read_char();
  if (!r->got_line || the_repl != r) return;
  char *line = r->line;
  r->line = NULL;
  r->got_line = 0;
  uninstall(r);
  deliver(r, line, line ? strlen(line) : 0);
  free(line);
}

static void pump(repl_t *r);

/* Plain mode reads no further than the end of the line it needs, a byte at a time: what
 * follows stays in stdin for the code the line runs (rill.stdin, io.read, a child), as with
 * lua.c, whose reads share stdin's buffer with the code's. */
static void plain_readable(repl_t *r, int status) {
  while (!r->eof) {
    if (r->len == r->cap) {
      size_t ncap = r->cap ? r->cap * 2 : 256;
      char *n = realloc(r->buf, ncap);
      if (n == NULL) {
        r->eof = 1; /* out of memory: end the session rather than lose input silently */
        break;
      }
      r->buf = n;
      r->cap = ncap;
    }
    ssize_t got = status < 0 ? 0 : read(r->fd, r->buf + r->len, 1);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0 && errno == EAGAIN) break; /* rill.stdin made it non-blocking */
    if (got <= 0) {
      r->eof = 1;
      break;
    }
    if (r->buf[r->len++] == '\n') break;
    int avail = 0; /* more without blocking the loop? (a regular file may block: it is quick) */
    if (r->pollable && (ioctl(r->fd, FIONREAD, &avail) != 0 || avail <= 0)) break;
  }
  pump(r);
}

/* Plain mode: hands the next buffered line to Lua, reading more when there is none. */
static void pump(repl_t *r) {
  while (r->state == S_READING && the_repl == r) {
    char *nl = r->len ? memchr(r->buf, '\n', r->len) : NULL;
    if (nl || (r->eof && r->len)) {
      size_t n = nl ? (size_t)(nl - r->buf) : r->len;
      char *line = malloc(n + 1);
      if (line == NULL) {
        r->eof = 1;
        r->len = 0;
        continue;
      }
      memcpy(line, r->buf, n);
      line[n] = '\0';
      size_t used = nl ? n + 1 : n;
      memmove(r->buf, r->buf + used, r->len - used);
      r->len -= used;
      stop_polling(r);
      deliver(r, line, n);
      free(line);
      return;
    }
    if (r->eof) {
      stop_polling(r);
      deliver(r, NULL, 0);
      return;
    }
    if (r->pollable) {
      start_polling(r);
      return;
    }
    plain_readable(r, 0); /* a regular file: reading it cannot block for long */
    return;
  }
}

static void pump_tick(void *arg) {
  (void)arg;
  repl_t *r = the_repl; /* not arg: the REPL may have closed since this was queued */
  if (r == NULL) return;
  r->pump_queued = 0;
  pump(r);
}

/* Plain mode: pump from the next tick. 0, or UV_ENOMEM. */
static int queue_pump(repl_t *r) {
  if (r->pump_queued) return 0;
  r->pump_queued = 1;
  int e = rill_loop_next_tick(&r->ctx->loop, pump_tick, NULL);
  if (e) r->pump_queued = 0;
  return e;
}

static void poll_cb(uv_poll_t *p, int status, int events) {
  repl_t *r = RILL_CONTAINER_OF(p->data, repl_t, hpoll);
  (void)events;
  if (r->tty)
    tty_readable(r, status);
  else
    plain_readable(r, status);
}

/* The evaluation interrupted by the hook is still running a turn later: it waits on
 * something else, so it is abandoned as a waiting one is. */
static void late_interrupt(void *arg) {
  repl_t *r = the_repl; /* not arg: the REPL may have closed since this was queued */
  (void)arg;
  if (r == NULL) return;
  r->late_queued = 0;
  if (r->state != S_RUNNING || r->eval_seq != r->late_seq) return;
  /* A destroyed stream tells its readers from immediates queued after this one: one more
   * turn for them. */
  if (r->late_turns-- > 0 && rill_loop_immediate(&r->ctx->loop, late_interrupt, NULL) == 0) {
    r->late_queued = 1;
    return;
  }
  r->state = S_IDLE;
  call_lua(r, r->fn_int, "running", 7);
}

static void async_cb(uv_async_t *a) {
  repl_t *r = RILL_CONTAINER_OF(a->data, repl_t, hasync);
  if (!r->int_pending) return;
  int was = r->int_state, fired = r->hook_fired;
  r->int_pending = 0;
  r->hook_fired = 0;
  disarm(r);
  catch_sigint(r);
  const char *kind;
  int took = r->state == S_RUNNING && take_back(r);
  if (r->state == S_RUNNING && (fired || took) && !r->late_queued) {
    /* The hook interrupted code the evaluation may be waiting on (a pipeline's Lua hook), or
     * rill.stdin was: give the failure this turn to reach the evaluation, which then reports it
     * itself. */
    r->late_seq = r->eval_seq;
    r->late_queued = 1;
    r->late_turns = 1;
    if (rill_loop_immediate(&r->ctx->loop, late_interrupt, NULL) == 0) return;
    r->late_queued = 0;
    kind = "running";
  } else if (r->state == S_RUNNING) {
    kind = "running";
  } else if (r->state == S_LENT) {
    take_back(r);
    kind = "prompt";
  } else if (was != S_RUNNING && !fired) {
    kind = "prompt";
    if (r->tty && r->installed) {
      redisplay(r);
      goto_end(r);
      fputs("^C\n", stdout);
      fflush(stdout);
      at_line_start(r);
      uninstall(r);
    }
  } else {
    return; /* the interrupted code has finished already, and the prompt is back */
  }
  r->state = S_IDLE;
  call_lua(r, r->fn_int, kind, strlen(kind));
}

static void prep_cb(uv_prepare_t *p) {
  repl_t *r = RILL_CONTAINER_OF(p->data, repl_t, hprep);
  /* The loop's own prepare runs after this one (libuv runs the newest first) and may run ticks
   * that print: run them now, so that nothing hides the prompt after it is drawn. */
  rill_loop_drain(&r->ctx->loop);
  /* Lent while it reads, given back once it ends: between two reads of a reader (which ask
   * for more from a tick) the prompt does not come and go. */
  if (r->state == S_LENT && !stdin_holds(r, 0)) {
    if (r->tty) {
      show_prompt(r);
    } else {
      r->state = S_READING;
      queue_pump(r);
    }
  } else if (r->state == S_READING && (r->installed || r->polling) && stdin_holds(r, 1)) {
    if (r->tty) {
      lend(r);
    } else {
      stop_polling(r);
      r->state = S_LENT;
    }
  }
  redisplay(r);
}

static void winch_cb(uv_signal_t *s, int signo) {
  repl_t *r = RILL_CONTAINER_OF(s->data, repl_t, hwinch);
  (void)signo;
  if (r->installed) rl_resize_terminal();
}

/* After a stop and fg, the terminal is in the shell's modes: set ours up again, keeping the line
 * being typed. */
static void cont_cb(uv_signal_t *s, int signo) {
  repl_t *r = RILL_CONTAINER_OF(s->data, repl_t, hcont);
  (void)signo;
  if (!r->installed) return;
  char *typed = strdup(r->typed && rl_line_buffer ? rl_line_buffer : "");
  rl_callback_handler_remove();
  fputs("\n", stdout);
  at_line_start(r); /* the shell wrote its own lines meanwhile */
  rl_callback_handler_install(r->prompt, line_cb);
  if (typed && typed[0]) {
    rl_insert_text(typed);
    fputs("\r", stdout); /* the redraw starts at the prompt's first column */
    rl_forced_update_display();
  }
  fflush(stdout);
  free(typed);
  r->hidden = 0;
}

/* ---- completion ---- */

static char *cand_next(const char *text, int state) {
  repl_t *r = the_repl;
  (void)text;
  if (r == NULL) return NULL;
  if (state == 0) r->icand = 0;
  if (r->icand >= r->ncand) return NULL;
  return strdup(r->cand[r->icand++]);
}

static void cand_free(repl_t *r) {
  for (int i = 0; i < r->ncand; i++) free(r->cand[i]);
  free(r->cand);
  r->cand = NULL;
  r->ncand = 0;
}

/* Asks Lua's complete(word, line_before_cursor) for the words that may replace word. */
static char **complete_cb(const char *text, int start, int end) {
  repl_t *r = the_repl;
  (void)start;
  rl_attempted_completion_over = 1; /* never fall back to file names */
  if (r == NULL || r->fn_complete == LUA_NOREF) return NULL;
  lua_State *L = r->L;
  int top = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->fn_complete);
  lua_pushstring(L, text);
  size_t len = rl_line_buffer ? strlen(rl_line_buffer) : 0;
  lua_pushlstring(L, rl_line_buffer ? rl_line_buffer : "",
                  end >= 0 && (size_t)end < len ? (size_t)end : len);
  if (rill__pcall(L, 2, 1) != LUA_OK || !lua_istable(L, -1)) {
    lua_settop(L, top);
    return NULL;
  }
  cand_free(r);
  lua_Integer n = luaL_len(L, -1);
  if (n > 0) r->cand = calloc((size_t)n, sizeof *r->cand);
  for (lua_Integer i = 1; r->cand && i <= n; i++) {
    if (lua_rawgeti(L, -1, i) == LUA_TSTRING) {
      char *s = strdup(lua_tostring(L, -1));
      if (s) r->cand[r->ncand++] = s;
    }
    lua_pop(L, 1);
  }
  lua_settop(L, top);
  char **m = r->ncand ? rl_completion_matches(text, cand_next) : NULL;
  cand_free(r);
  return m;
}

/* ---- teardown ---- */

/* Gives the terminal and SIGINT back. Idempotent; touches no Lua (it may run while the state
 * closes). */
static void detach(repl_t *r) {
  if (r->detached) return;
  r->detached = 1;
  if (r->installed) rl_callback_handler_remove();
  r->installed = 0;
  if (r->tty) {
    fflush(stdout);
  }
  struct sigaction cur;
  if (sigaction(SIGINT, NULL, &cur) == 0 &&
      (cur.sa_handler == on_sigint || cur.sa_handler == SIG_DFL))
    sigaction(SIGINT, &r->old_int, NULL);
  if (r->pollable) fcntl(r->fd, F_SETFL, r->stdin_flags);
  if (r->tty) rill_stdio_set_guard(NULL, NULL);
  if (the_repl == r) the_repl = NULL;
}

static void handle_closed(repl_t *r) {
  detach(r);
  if (--r->nopen > 0) return;
  cand_free(r);
  if (r->in) rill_stream_unref(r->in);
  free(r->line);
  free(r->buf);
  free(r->prompt);
  free(r->histfile);
  if (r->in_file)
    fclose(r->in_file); /* and r->fd with it */
  else if (r->fd >= 0)
    close(r->fd);
  free(r);
}

static void poll_closed(rill_handle_t *h) {
  handle_closed(RILL_CONTAINER_OF(h, repl_t, hpoll));
}
static void async_closed(rill_handle_t *h) {
  handle_closed(RILL_CONTAINER_OF(h, repl_t, hasync));
}
static void prep_closed(rill_handle_t *h) {
  handle_closed(RILL_CONTAINER_OF(h, repl_t, hprep));
}
static void winch_closed(rill_handle_t *h) {
  handle_closed(RILL_CONTAINER_OF(h, repl_t, hwinch));
}
static void cont_closed(rill_handle_t *h) {
  handle_closed(RILL_CONTAINER_OF(h, repl_t, hcont));
}

static void close_all(repl_t *r) {
  detach(r);
  if (r->pollable) rill_handle_close(&r->hpoll);
  rill_handle_close(&r->hasync);
  rill_handle_close(&r->hprep);
  if (r->tty) {
    rill_handle_close(&r->hwinch);
    rill_handle_close(&r->hcont);
  }
}

/* A process that ends without closing the engine (os.exit at the prompt) still gets its
 * terminal back. */
static void at_exit(void) {
  repl_t *r = the_repl;
  if (r && r->installed) rl_callback_handler_remove();
}

/* ---- Lua functions ---- */

static repl_t *check_open(lua_State *L) {
  if (the_repl == NULL || the_repl->L == NULL) luaL_error(L, "the REPL is not open");
  return the_repl;
}

/* A registry reference to opts[field] (checked to be a function or nil), or LUA_NOREF. */
static int ref_fn(lua_State *L, int t, const char *field) {
  lua_getfield(L, t, field);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return LUA_NOREF;
  }
  return luaL_ref(L, LUA_REGISTRYINDEX);
}

/* open{on_line =, on_interrupt =, complete =, history = path}: starts the REPL's terminal;
 * returns true when lines are edited through libedit (stdin is a terminal). */
static int l_open(lua_State *L) {
  rill_ctx_t *ctx = rill__ctx(L);
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "history");
  const char *hist = luaL_optstring(L, -1, NULL);
  lua_getfield(L, 1, "on_line");
  luaL_argcheck(L, lua_isfunction(L, -1), 1, "on_line must be a function");
  lua_getfield(L, 1, "on_interrupt");
  luaL_argcheck(L, lua_isfunction(L, -1), 1, "on_interrupt must be a function");
  lua_getfield(L, 1, "complete");
  luaL_argcheck(L, lua_isnil(L, -1) || lua_isfunction(L, -1), 1, "complete must be a function");
  lua_settop(L, 1);
  if (the_repl) return luaL_error(L, "open: the REPL is already open");

  /* The references first: luaL_ref may raise, and nothing is allocated yet. */
  int fn_line = ref_fn(L, 1, "on_line"), fn_int = ref_fn(L, 1, "on_interrupt");
  int fn_complete = ref_fn(L, 1, "complete");
  lua_createtable(L, 3, 0);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_rawseti(L, -2, 1);
  lua_pushliteral(L, "rill.stdio");
  lua_rawseti(L, -2, 2);
  lua_pushliteral(L, "stdin");
  lua_rawseti(L, -2, 3);
  int look_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  repl_t *r = calloc(1, sizeof *r);
  char *histfile = hist ? strdup(hist) : NULL;
  if (r == NULL || (hist && histfile == NULL)) {
    free(r);
    free(histfile);
    luaL_unref(L, LUA_REGISTRYINDEX, fn_line);
    luaL_unref(L, LUA_REGISTRYINDEX, fn_int);
    luaL_unref(L, LUA_REGISTRYINDEX, fn_complete);
    luaL_unref(L, LUA_REGISTRYINDEX, look_ref);
    return luaL_error(L, "open: out of memory");
  }
  r->histfile = histfile;
  r->fn_line = fn_line;
  r->fn_int = fn_int;
  r->fn_complete = fn_complete;
  r->look_ref = look_ref;
  r->thread_ref = LUA_NOREF;
  r->L = ctx->L;
  r->owner = pthread_self();
  r->ctx = ctx;
  at_line_start(r);
  r->tty = isatty(STDIN_FILENO);
  uv_loop_t *uv = ctx->loop.uv;

  r->stdin_flags = fcntl(STDIN_FILENO, F_GETFL);
  r->fd = r->stdin_flags >= 0 ? fcntl(STDIN_FILENO, F_DUPFD_CLOEXEC, 3) : -1;
  if (r->fd >= 0 && uv_poll_init(uv, &r->poll, r->fd) == 0) {
    /* uv_poll_init made stdin non-blocking; libedit and the code typed at the prompt (and any
     * child process sharing the terminal) expect it blocking, and we only read when it is
     * readable anyway. */
    fcntl(r->fd, F_SETFL, r->stdin_flags);
    r->pollable = 1;
    rill_handle_track(&ctx->loop, &r->hpoll, (uv_handle_t *)&r->poll, poll_closed);
    r->nopen++;
  } else if (r->tty) {
    if (r->fd >= 0) close(r->fd);
    free(r->histfile);
    free(r);
    luaL_unref(L, LUA_REGISTRYINDEX, fn_line);
    luaL_unref(L, LUA_REGISTRYINDEX, fn_int);
    luaL_unref(L, LUA_REGISTRYINDEX, fn_complete);
    luaL_unref(L, LUA_REGISTRYINDEX, look_ref);
    return luaL_error(L, "open: cannot watch the terminal");
  }
  uv_async_init(uv, &r->async, async_cb);
  rill_handle_track(&ctx->loop, &r->hasync, (uv_handle_t *)&r->async, async_closed);
  r->nopen++;
  uv_prepare_init(uv, &r->prep);
  rill_handle_track(&ctx->loop, &r->hprep, (uv_handle_t *)&r->prep, prep_closed);
  r->nopen++;
  uv_prepare_start(&r->prep, prep_cb);
  uv_unref((uv_handle_t *)&r->prep);
  if (r->tty) {
    uv_signal_init(uv, &r->winch);
    rill_handle_track(&ctx->loop, &r->hwinch, (uv_handle_t *)&r->winch, winch_closed);
    r->nopen++;
    uv_signal_start(&r->winch, winch_cb, SIGWINCH);
    uv_unref((uv_handle_t *)&r->winch);
    uv_signal_init(uv, &r->cont);
    rill_handle_track(&ctx->loop, &r->hcont, (uv_handle_t *)&r->cont, cont_closed);
    r->nopen++;
    uv_signal_start(&r->cont, cont_cb, SIGCONT);
    uv_unref((uv_handle_t *)&r->cont);

    /* libedit: no signal handlers of its own (the loop owns signals), no appended space after
     * a completion, and words that keep a.b.c and s:m together. */
    r->in_file = fdopen(r->fd, "r");
    rl_instream = r->in_file ? r->in_file : stdin;
    rl_readline_name = "rill";
    rl_catch_signals = 0;
    rl_catch_sigwinch = 0;
    rl_initialize();
    rl_attempted_completion_function = complete_cb;
    rl_completion_append_character = '\0';
    rl_basic_word_break_characters = " \t\n\"\\'`@$><=;|&{(+-*/%^~#,[])}";
    rl_completer_word_break_characters = (char *)rl_basic_word_break_characters;
    using_history();
    stifle_history(1000);
    if (r->histfile) read_history(r->histfile);
    rill_stdio_set_guard(guard, r);
  }
  sigaction(SIGINT, NULL, &r->old_int);
  the_repl = r;
  catch_sigint(r);
  static int registered;
  if (!registered && atexit(at_exit) == 0) registered = 1;
  lua_pushboolean(L, r->tty);
  return 1;
}

/* read(prompt): shows prompt and delivers the next line (nil at end of input) to on_line. */
static int l_read(lua_State *L) {
  repl_t *r = check_open(L);
  const char *prompt = luaL_checkstring(L, 1);
  char *p = strdup(prompt);
  if (p == NULL) return luaL_error(L, "read: out of memory");
  free(r->prompt);
  r->prompt = p;
  disarm(r);
  luaL_unref(L, LUA_REGISTRYINDEX, r->thread_ref);
  r->thread_ref = LUA_NOREF;
  r->thread = NULL;
  r->state = S_READING;
  catch_sigint(r);
  if (r->detached) return 0;
  if (r->tty) {
    r->looked_valid = 0; /* what was evaluated may have opened rill.stdin just now */
    if (stdin_holds(r, 1))
      lend(r);
    else
      show_prompt(r);
  } else {
    fputs(r->prompt, stdout);
    fflush(stdout);
    r->looked_valid = 0;
    if (stdin_holds(r, 1))
      r->state = S_LENT; /* the next line waits until rill.stdin is done with stdin */
    else if (queue_pump(r) != 0)
      return luaL_error(L, "read: out of memory");
  }
  return 0;
}

/* running(): called by the task that evaluates a line; Ctrl-C now interrupts it. */
static int l_running(lua_State *L) {
  repl_t *r = check_open(L);
  lua_pushthread(L);
  luaL_unref(L, LUA_REGISTRYINDEX, r->thread_ref);
  r->thread_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* keeps the thread alive while referenced */
  r->thread = L;
  r->state = S_RUNNING;
  r->eval_seq++;
  return 0;
}

/* write(s [, fd]): writes s to stdout (fd 2: stderr), erasing the prompt first if it is shown;
 * the prompt comes back before the loop next waits. Works without an open REPL too. */
static int l_write(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  lua_Integer fd = luaL_optinteger(L, 2, 1);
  luaL_argcheck(L, fd == 1 || fd == 2, 2, "1 (stdout) or 2 (stderr) expected");
  repl_t *r = the_repl;
  if (n == 0) return 0;
  if (r) hide(r);
  FILE *f = fd == 2 ? stderr : stdout;
  end_echo(r);
  fflush(stdout);
  fwrite(s, 1, n, f);
  fflush(f);
  if (r) track(r, s, n);
  return 0;
}

/* add_history(line): remembers line, and saves the history file. */
static int l_add_history(lua_State *L) {
  repl_t *r = check_open(L);
  const char *line = luaL_checkstring(L, 1);
  if (!r->tty || line[0] == '\0') return 0;
  add_history(line);
  if (r->histfile) {
    /* Created private before libedit writes it: history can hold secrets typed at a prompt. */
    int fd = open(r->histfile, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd >= 0) close(fd);
    write_history(r->histfile);
  }
  return 0;
}

/* close(): restores the terminal and closes the REPL's handles. */
static int l_close(lua_State *L) {
  repl_t *r = the_repl;
  if (r == NULL) return 0;
  disarm(r);
  luaL_unref(L, LUA_REGISTRYINDEX, r->fn_line);
  luaL_unref(L, LUA_REGISTRYINDEX, r->fn_int);
  luaL_unref(L, LUA_REGISTRYINDEX, r->fn_complete);
  luaL_unref(L, LUA_REGISTRYINDEX, r->thread_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, r->look_ref);
  r->fn_line = r->fn_int = r->fn_complete = r->thread_ref = r->look_ref = LUA_NOREF;
  r->thread = NULL;
  close_all(r);
  return 0;
}

/* errstring(v): the message of error value v with its traceback, as the command prints it. */
static int l_errstring(lua_State *L) {
  luaL_checkany(L, 1);
  rill__errstring(L, 1);
  return 1;
}

/* is_exit(v): true for the value rill.exit() raises to unwind. */
static int l_is_exit(lua_State *L) {
  lua_pushboolean(L, rill__is_exit(L, 1));
  return 1;
}

/* columns(): the terminal's width (80 when stdout is not a terminal). */
static int l_columns(lua_State *L) {
  lua_pushinteger(L, columns());
  return 1;
}

int rill__open_repl(lua_State *L) {
  static const luaL_Reg funcs[] = {
      {"open", l_open},
      {"read", l_read},
      {"running", l_running},
      {"write", l_write},
      {"add_history", l_add_history},
      {"close", l_close},
      {"errstring", l_errstring},
      {"is_exit", l_is_exit},
      {"columns", l_columns},
      {NULL, NULL},
  };
  luaL_newlib(L, funcs);
  return 1;
}
