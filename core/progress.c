/* core/progress.c: a pass-through stream that draws a progress bar (rate, ETA) on a terminal. */
#include "progress.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include "stdfd.h"

typedef struct {
  rill_stream_t *s;
  rill_loop_t *loop;
  uint64_t done, total;
  char *label;
  int fd, draw;
  unsigned interval, width;
  uint64_t t0; /* uv_hrtime() at the first chunk */
  uv_timer_t timer;
  rill_handle_t th;
  unsigned timer_init : 1, timer_on : 1, closing : 1, destroying : 1, started : 1;
  rill_err_t *derr;
} progress_t;

/* "12.3 MiB" */
static void human(char *buf, size_t n, double v) {
  static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    u++;
  }
  snprintf(buf, n, u ? "%.1f %s" : "%.0f %s", v, unit[u]);
}

size_t rill_progress_format(char *buf, size_t n, const char *label, uint64_t done, uint64_t total,
                            double secs, unsigned width) {
  char sdone[32], srate[32], tail[160];
  double rate = secs > 0 ? (double)done / secs : 0;
  human(sdone, sizeof sdone, (double)done);
  human(srate, sizeof srate, rate);
  if (total) {
    char eta[32] = "--:--";
    if (rate > 0 && done <= total) {
      unsigned long left = (unsigned long)((double)(total - done) / rate + 0.5);
      snprintf(eta, sizeof eta, "%lu:%02lu", left / 60, left % 60);
    }
    unsigned pct = (unsigned)(done >= total ? 100 : done * 100 / total);
    snprintf(tail, sizeof tail, " %3u%% %s %s/s ETA %s", pct, sdone, srate, eta);
  } else {
    snprintf(tail, sizeof tail, " %s %s/s", sdone, srate);
  }
  size_t len = 0;
  if (n == 0) return 0;
  len += (size_t)snprintf(buf, n, "%s%s", label ? label : "", label && *label ? " " : "");
  if (len >= n) len = n - 1;
  if (total) {
    /* the bar takes what the line has left */
    size_t fixed = len + strlen(tail) + 2;
    size_t bar = width > fixed + 10 ? width - fixed : 10;
    if (bar > 60) bar = 60;
    size_t fill = (size_t)((done >= total ? 1.0 : (double)done / (double)total) * (double)bar);
    if (len + bar + 3 < n) {
      buf[len++] = '[';
      for (size_t i = 0; i < bar; i++) buf[len++] = i < fill ? '#' : '.';
      buf[len++] = ']';
      buf[len] = '\0';
    }
  }
  int k = snprintf(buf + len, n - len, "%s", len ? tail : tail + 1); /* no leading space */
  if (k > 0) len += (size_t)k;
  if (len >= n) len = n - 1;
  return len;
}

static void draw(progress_t *p, int last) {
  if (!p->draw) return;
  char line[512];
  double secs = p->started ? (double)(uv_hrtime() - p->t0) / 1e9 : 0;
  size_t len =
      rill_progress_format(line + 1, sizeof line - 3, p->label, p->done, p->total, secs, p->width);
  line[0] = '\r';
  len++;
  /* clear to the end of the line (the previous line may have been longer) */
  if (len + 4 < sizeof line) {
    memcpy(line + len, "\x1b[K", 3);
    len += 3;
  }
  if (last) line[len++] = '\n';
  struct iovec v = {line, len};
  rill_stdio_guard(p->fd, &v, 1); /* the REPL's prompt steps aside */
  ssize_t w = write(p->fd, line, len);
  (void)w; /* a bar that cannot be drawn is not an error of the data */
}

static void tick_cb(uv_timer_t *t) {
  progress_t *p = RILL_CONTAINER_OF(t, progress_t, timer);
  draw(p, 0);
}

static void start_timer(progress_t *p) {
  if (!p->draw || p->timer_init || p->destroying) return;
  if (uv_timer_init(p->loop->uv, &p->timer) != 0) return;
  rill_handle_track(p->loop, &p->th, (uv_handle_t *)&p->timer, NULL);
  p->timer_init = 1;
  uv_unref((uv_handle_t *)&p->timer); /* the bar never keeps the process alive */
  uv_timer_start(&p->timer, tick_cb, p->interval, p->interval);
}

static void pr_transform(rill_stream_t *s, const rill_chunk_t *c) {
  progress_t *p = rill_stream_data(s);
  if (!p->started) {
    p->started = 1;
    p->t0 = uv_hrtime();
    start_timer(p);
  }
  p->done += c->view.len;
  rill_chunk_t out;
  rill_chunk_dup(&out, c);
  rill_stream_push(s, &out);
  rill_stream_write_done(s, NULL);
}

static void stop_timer(progress_t *p) {
  if (p->timer_init) uv_timer_stop(&p->timer);
}

static void pr_flush(rill_stream_t *s) {
  progress_t *p = rill_stream_data(s);
  stop_timer(p);
  draw(p, 1);
  rill_stream_final_done(s, NULL);
}

static void timer_closed(rill_handle_t *h) {
  progress_t *p = RILL_CONTAINER_OF(h, progress_t, th);
  p->timer_init = 0;
  rill_err_t *e = p->derr;
  p->derr = NULL;
  rill_stream_destroy_done(p->s, e);
  rill_err_unref(e);
}

static void pr_destroy(rill_stream_t *s, rill_err_t *err) {
  progress_t *p = rill_stream_data(s);
  p->destroying = 1;
  if (p->timer_init) {
    p->derr = rill_err_ref(err);
    p->th.on_close = timer_closed;
    rill_handle_close(&p->th);
    return;
  }
  rill_stream_destroy_done(s, err);
}

static void pr_free(rill_stream_t *s) {
  progress_t *p = rill_stream_data(s);
  rill_err_unref(p->derr);
  free(p->label);
  free(p);
}

static const rill_stream_impl_t progress_impl = {
    .transform = pr_transform, .flush = pr_flush, .destroy = pr_destroy, .free = pr_free};

int rill_progress_new(rill_loop_t *loop, const rill_progress_opts_t *o, rill_stream_t **out) {
  rill_progress_opts_t d = RILL_PROGRESS_OPTS_INIT;
  if (o == NULL) o = &d;
  if (loop == NULL || out == NULL || o->interval_ms > 3600 * 1000) return UV_EINVAL;
  progress_t *p = calloc(1, sizeof *p);
  if (p == NULL) return UV_ENOMEM;
  if (o->label && (p->label = strdup(o->label)) == NULL) {
    free(p);
    return UV_ENOMEM;
  }
  p->loop = loop;
  p->total = o->total;
  p->fd = o->fd >= 0 ? o->fd : 2;
  p->draw = o->force || isatty(p->fd);
  p->interval = o->interval_ms ? o->interval_ms : 100;
  p->width = o->width;
  if (p->width == 0) {
    struct winsize ws;
    p->width = ioctl(p->fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20 ? ws.ws_col : 80;
  }
  rill_stream_opts_t so = {RILL_STREAM_DUPLEX, RILL_HWM_DEFAULT, RILL_HWM_DEFAULT};
  int e = rill_stream_new(loop, &progress_impl, p, &so, &p->s);
  if (e) {
    free(p->label);
    free(p);
    return e;
  }
  *out = p->s;
  return 0;
}

uint64_t rill_progress_bytes(rill_stream_t *s) {
  if (rill_stream_impl(s) != &progress_impl) return 0;
  return ((progress_t *)rill_stream_data(s))->done;
}
