// Pure helpers for what the pages show: durations, prices, sizes, rates, storyboard cues.

/** 65 -> "1:05", 3723 -> "1:02:03". */
export function formatDuration(secs: number | null | undefined): string {
  if (secs == null || !Number.isFinite(secs) || secs < 0) return '–';
  const s = Math.floor(secs);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  const pad = (n: number) => String(n).padStart(2, '0');
  return h > 0 ? `${h}:${pad(m)}:${pad(r)}` : `${m}:${pad(r)}`;
}

/** 0 -> "Free", 4900 -> "$49.00". */
export function formatPrice(cents: number): string {
  if (!cents) return 'Free';
  return new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD' }).format(cents / 100);
}

export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 0) return '–';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let v = bytes;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v < 10 && i > 0 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

/** A file's kind for a listing: its extension ("PDF", "ZIP"), else the subtype of
 * its media type ("application/pdf" -> "PDF", "text/plain" -> "Text"), else "File". */
export function fileKind(filename: string, contentType: string | null): string {
  const ext = /\.([a-z0-9]{1,8})$/i.exec(filename)?.[1];
  if (ext) return ext.toUpperCase();
  const sub = contentType?.split('/')[1]?.split(/[;+]/)[0].trim();
  return sub === 'plain' ? 'Text' : sub ? sub.toUpperCase() : 'File';
}

/** Seconds left at a rate, as "3 min left" / "12 s left". */
export function formatEta(remainingBytes: number, bytesPerSec: number): string {
  if (!(bytesPerSec > 0) || remainingBytes <= 0) return '';
  const secs = remainingBytes / bytesPerSec;
  if (secs < 60) return `${Math.ceil(secs)} s left`;
  if (secs < 3600) return `${Math.ceil(secs / 60)} min left`;
  return `${(secs / 3600).toFixed(1)} h left`;
}

/** An exponentially smoothed transfer rate, so the speed shown does not jitter. */
export class RateMeter {
  private last: { t: number; bytes: number } | null = null;
  rate = 0;
  constructor(private readonly smoothing = 0.3) {}
  update(bytes: number, now: number): number {
    if (this.last && now > this.last.t) {
      const instant = ((bytes - this.last.bytes) * 1000) / (now - this.last.t);
      this.rate = this.rate === 0 ? instant : this.rate + this.smoothing * (instant - this.rate);
    }
    this.last = { t: now, bytes };
    return this.rate;
  }
  reset(): void {
    this.last = null;
    this.rate = 0;
  }
}

/** "720p" for a rendition of that height (the short side for portrait video). */
export function levelLabel(width: number, height: number): string {
  return `${Math.min(width, height) || height}p`;
}

export interface StoryboardCue {
  start: number;
  end: number;
  url: string;
  x: number;
  y: number;
  w: number;
  h: number;
}

function vttTime(t: string): number {
  const parts = t.trim().split(':').map(Number);
  return parts.reduce((acc, p) => acc * 60 + p, 0);
}

/** Storyboard cues from a WebVTT file whose cue texts are `image.jpg#xywh=x,y,w,h`. */
export function parseStoryboard(vtt: string, base: string): StoryboardCue[] {
  const cues: StoryboardCue[] = [];
  const lines = vtt.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const m = lines[i].match(/^([\d:.]+)\s+-->\s+([\d:.]+)/);
    if (!m) continue;
    const text = (lines[i + 1] || '').trim();
    const x = text.match(/^(.*)#xywh=(\d+),(\d+),(\d+),(\d+)$/);
    if (!x) continue;
    cues.push({
      start: vttTime(m[1]),
      end: vttTime(m[2]),
      url: new URL(x[1], base).toString(),
      x: +x[2],
      y: +x[3],
      w: +x[4],
      h: +x[5],
    });
  }
  return cues;
}

/** The cue showing at time t (binary search; cues are in time order). */
export function cueAt(cues: StoryboardCue[], t: number): StoryboardCue | null {
  let lo = 0;
  let hi = cues.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (t < cues[mid].start) hi = mid - 1;
    else if (t >= cues[mid].end) lo = mid + 1;
    else return cues[mid];
  }
  return cues.length && t >= cues[cues.length - 1].end ? cues[cues.length - 1] : null;
}

/** Where to start a lecture: the saved position, unless it was (nearly) finished. */
export function resumePosition(saved: { position_secs: number; completed: boolean } | null, duration: number | null): number {
  if (!saved || saved.completed) return 0;
  if (duration && saved.position_secs > duration - 5) return 0;
  return saved.position_secs > 3 ? saved.position_secs : 0;
}

/** Where a playback URL's token starts: everything up to and including `/play/`
 * (origin and any path prefix), or null for a URL that is not one. */
export function playPrefix(url: string): string | null {
  const at = url.split(/[?#]/)[0].indexOf('/play/');
  return at < 0 ? null : url.slice(0, at + '/play/'.length);
}

/** `url` with `token` in place of its playback token, if it lies under `prefix`
 * (from `playPrefix`); any other URL (a presigned storage URL) is returned as it is. */
export function withPlayToken(url: string, prefix: string, token: string): string {
  if (!url.startsWith(prefix)) return url;
  const slash = url.indexOf('/', prefix.length);
  return slash < 0 ? url : prefix + token + url.slice(slash);
}

/** When to ask for a new playback grant, in ms from `nowMs`, for one expiring at
 * `expiresAt` (unix seconds): a minute before it expires, or halfway through a
 * shorter life. */
export function renewDelayMs(expiresAt: number, nowMs: number): number {
  const left = expiresAt * 1000 - nowMs;
  return Math.max(0, left - Math.min(60_000, left / 2));
}

export interface ChapterLine {
  start_secs: number;
  title: string;
}

/** Chapters written one per line, as in a video description: "0:00 Intro",
 * "1:02:03 Laplace". Blank lines are skipped; a line without a time is an error
 * naming it. */
export function parseChapterLines(text: string): { chapters: ChapterLine[]; error?: string } {
  const chapters: ChapterLine[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (!line) continue;
    const m = /^(?:(\d+):)?(\d{1,2}):(\d{2})(?:\.(\d{1,3}))?\s+(.+)$/.exec(line);
    if (!m || Number(m[3]) >= 60 || (m[1] !== undefined && Number(m[2]) >= 60)) {
      return { chapters, error: `line ${i + 1}: write a time then a title, e.g. "1:05 Fourier series"` };
    }
    const secs = Number(m[1] ?? 0) * 3600 + Number(m[2]) * 60 + Number(m[3]) + Number(`0.${m[4] ?? 0}`);
    chapters.push({ start_secs: secs, title: m[5].replace(/^[-–:]\s*/, '') });
  }
  return { chapters };
}

/** The chapters back as lines for the editor. */
export function chapterLines(chapters: ChapterLine[]): string {
  return chapters.map((c) => `${formatDuration(c.start_secs)} ${c.title}`).join('\n');
}

/** The chapter playing at `t`: the last one started. */
export function chapterAt<T extends ChapterLine>(chapters: T[], t: number): T | null {
  let found: T | null = null;
  for (const c of chapters) if (c.start_secs <= t) found = c;
  return found;
}
