// Viewing beacons: what the player saw during one playback session (a view starting
// and how long it took, stalls, rendition switches, the ranges of the lecture actually
// played, errors), batched and sent to `POST /api/beacons` with the grant's beacon
// token: every 10 s by fetch, and by `navigator.sendBeacon` when the page is hidden or
// left and when the player goes. Nothing here may throw into the player.

export type ViewEvent =
  | { kind: 'start'; startup_ms: number }
  | { kind: 'watched'; from: number; to: number }
  | { kind: 'rebuffer'; ms: number }
  | { kind: 'switch'; height: number }
  | { kind: 'error'; fatal: boolean };

/** The server takes at most this many events in one beacon. */
export const MAX_EVENTS = 200;
const SEND_EVERY_MS = 10_000;
/** A forward move of the clock up to this (in seconds of media) between two looks
 * while playing is playback; more is a jump. */
const MAX_STEP = 2.5;

const round = (t: number) => Math.round(t * 1000) / 1000;

/** The contiguous ranges played: fed the media clock while playing, it extends the
 * open range while the clock moves forward by small steps and starts another after a
 * jump; `close` ends the open range (pause, seek, end). `take` hands over what was
 * watched since the last take, leaving the open range open from where it got to. */
export class RangeTracker {
  private open: { from: number; to: number } | null = null;
  private done: { from: number; to: number }[] = [];

  /** The clock read `t` (seconds) while playing. */
  tick(t: number): void {
    if (!Number.isFinite(t) || t < 0) return;
    const o = this.open;
    if (o && t >= o.to && t - o.to <= MAX_STEP) o.to = t;
    else if (!o || t !== o.to) {
      this.close();
      this.open = { from: t, to: t };
    }
  }

  close(): void {
    if (this.open && this.open.to > this.open.from) this.done.push(this.open);
    this.open = null;
  }

  take(): ViewEvent[] {
    const ranges = [...this.done];
    this.done = [];
    if (this.open && this.open.to > this.open.from) {
      ranges.push({ ...this.open });
      this.open.from = this.open.to;
    }
    return ranges.map((r) => ({ kind: 'watched', from: round(r.from), to: round(r.to) }));
  }
}

/** The events waiting to be sent, at most `MAX_EVENTS`: watched ranges are never
 * dropped for others (the oldest other event goes first). */
export class EventQueue {
  private events: ViewEvent[] = [];
  push(...events: ViewEvent[]): void {
    this.events.push(...events);
    while (this.events.length > MAX_EVENTS) {
      const i = this.events.findIndex((e) => e.kind !== 'watched');
      this.events.splice(i >= 0 ? i : 0, 1);
    }
  }
  /** Everything waiting (then nothing waits). */
  drain(): ViewEvent[] {
    return this.events.splice(0);
  }
  get length(): number {
    return this.events.length;
  }
}

/** The media element (and clock) a session watches. */
export interface BeaconSource {
  video: HTMLVideoElement;
}

export interface BeaconSession {
  /** A rendition of this height is now playing. */
  switched(height: number): void;
  error(fatal: boolean): void;
  /** The token of a renewed grant. */
  setToken(token: string): void;
  /** Sends what is left and stops listening. */
  destroy(): void;
}

const URL_PATH = '/api/beacons';

function newSessionId(): string {
  if (typeof crypto !== 'undefined' && typeof crypto.randomUUID === 'function') return crypto.randomUUID();
  // Older browsers: a v4 UUID from getRandomValues.
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** Starts a playback session's beacons on `video`, sent with `token`. */
export function beaconSession(video: HTMLVideoElement, token: string): BeaconSession {
  const session = newSessionId();
  const ranges = new RangeTracker();
  const queue = new EventQueue();
  let stopped = false;
  // Startup: from asking to play (or from now, when the element plays by itself) to
  // the first frame playing.
  let askedAt = video.autoplay ? performance.now() : 0;
  let started = false;
  let stalledAt = 0;
  // A seek makes the element wait too, and its `waiting` may be handled after a quick
  // seek has already finished: waits this soon after one are not stalls.
  let seekedAt = -Infinity;
  const SEEK_GRACE_MS = 750;
  let height = 0;

  const safe = (fn: () => void) => () => {
    try {
      if (!stopped) fn();
    } catch {
      /* never into the player */
    }
  };
  const playing = () => !video.paused && !video.seeking && !video.ended;

  const on: [string, () => void][] = [
    ['play', () => {
      if (!started && !askedAt) askedAt = performance.now();
    }],
    ['playing', () => {
      const now = performance.now();
      if (!started) {
        started = true;
        queue.push({ kind: 'start', startup_ms: Math.max(0, Math.round(now - (askedAt || now))) });
      } else if (stalledAt) {
        queue.push({ kind: 'rebuffer', ms: Math.round(now - stalledAt) });
      }
      stalledAt = 0;
      ranges.tick(video.currentTime);
    }],
    ['waiting', () => {
      // A stall while playing; not the first load, and not the wait after a seek.
      const now = performance.now();
      if (started && !video.paused && !video.seeking && !stalledAt && now - seekedAt > SEEK_GRACE_MS) stalledAt = now;
    }],
    ['timeupdate', () => {
      if (playing()) ranges.tick(video.currentTime);
    }],
    ['pause', () => {
      if (!video.seeking) ranges.tick(video.currentTime);
      ranges.close();
      if (stalledAt) queue.push({ kind: 'rebuffer', ms: Math.round(performance.now() - stalledAt) });
      stalledAt = 0;
    }],
    ['seeking', () => {
      ranges.close();
      stalledAt = 0;
      seekedAt = performance.now();
    }],
    ['seeked', () => {
      seekedAt = performance.now();
    }],
    ['ended', () => {
      ranges.tick(video.currentTime);
      ranges.close();
    }],
  ];
  const handlers = on.map(([type, fn]) => [type, safe(fn)] as const);
  for (const [type, fn] of handlers) video.addEventListener(type, fn);

  const batch = (): string | null => {
    queue.push(...ranges.take());
    const events = queue.drain();
    return events.length ? JSON.stringify({ token, session, events }) : null;
  };
  const send = () => {
    const body = batch();
    if (!body) return;
    fetch(URL_PATH, { method: 'POST', keepalive: true, headers: { 'Content-Type': 'application/json' }, body })
      .then((r) => {
        // Turned away for now (busy) or not reached: those events go with the next batch.
        if (r.status === 429 || r.status >= 500) requeue(body);
      })
      .catch(() => requeue(body));
  };
  const requeue = (body: string) => {
    try {
      if (!stopped) queue.push(...(JSON.parse(body).events as ViewEvent[]));
    } catch {
      /* dropped */
    }
  };
  // Leaving: sendBeacon outlives the page; fetch with keepalive where it refuses.
  const flush = () => {
    try {
      const body = batch();
      if (!body) return;
      const sent = typeof navigator.sendBeacon === 'function' && navigator.sendBeacon(URL_PATH, new Blob([body], { type: 'text/plain' }));
      if (!sent) void fetch(URL_PATH, { method: 'POST', keepalive: true, body }).catch(() => {});
    } catch {
      /* never into the player */
    }
  };
  const hidden = () => {
    if (document.visibilityState === 'hidden') flush();
  };
  const timer = window.setInterval(safe(send), SEND_EVERY_MS);
  window.addEventListener('pagehide', flush);
  document.addEventListener('visibilitychange', hidden);

  return {
    switched: (h: number) => safe(() => {
      if (height && h && h !== height) queue.push({ kind: 'switch', height: h });
      if (h) height = h;
    })(),
    error: (fatal: boolean) => safe(() => queue.push({ kind: 'error', fatal }))(),
    setToken: (t: string) => {
      if (t) token = t;
    },
    destroy() {
      if (stopped) return;
      try {
        if (playing()) ranges.tick(video.currentTime);
        ranges.close();
      } catch {
        /* ignore */
      }
      flush();
      stopped = true;
      window.clearInterval(timer);
      window.removeEventListener('pagehide', flush);
      document.removeEventListener('visibilitychange', hidden);
      for (const [type, fn] of handlers) video.removeEventListener(type, fn);
    },
  };
}
