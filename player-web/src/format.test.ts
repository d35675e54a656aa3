import { describe, expect, it } from 'vitest';
import { RateMeter, chapterAt, chapterLines, cueAt, parseChapterLines, fileKind, formatBytes, formatDuration, formatEta, formatPrice, levelLabel, parseStoryboard, playPrefix, renewDelayMs, resumePosition, withPlayToken } from './format';

describe('formatting', () => {
  it('formats durations', () => {
    expect(formatDuration(0)).toBe('0:00');
    expect(formatDuration(65.9)).toBe('1:05');
    expect(formatDuration(3723)).toBe('1:02:03');
    expect(formatDuration(null)).toBe('–');
    expect(formatDuration(NaN)).toBe('–');
  });
  it('formats prices', () => {
    expect(formatPrice(0)).toBe('Free');
    expect(formatPrice(4900)).toBe('$49.00');
  });
  it('formats sizes and time left', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(1536)).toBe('1.5 KB');
    expect(formatBytes(300 * 1024 * 1024)).toBe('300 MB');
    expect(formatEta(10_000_000, 1_000_000)).toBe('10 s left');
    expect(formatEta(600_000_000, 1_000_000)).toBe('10 min left');
    expect(formatEta(100, 0)).toBe('');
  });
  it('names the kind of a file', () => {
    expect(fileKind('week 1 slides.pdf', 'application/pdf')).toBe('PDF');
    expect(fileKind('code.tar.gz', 'application/gzip')).toBe('GZ');
    expect(fileKind('README', 'text/plain; charset=utf-8')).toBe('Text');
    expect(fileKind('notes', 'image/svg+xml')).toBe('SVG');
    expect(fileKind('notes', null)).toBe('File');
    expect(fileKind('archive.', null)).toBe('File');
  });
  it('labels levels by the short side', () => {
    expect(levelLabel(1280, 720)).toBe('720p');
    expect(levelLabel(720, 1280)).toBe('720p');
  });
});

describe('rate meter', () => {
  it('smooths the transfer rate', () => {
    const m = new RateMeter(0.5);
    m.update(0, 0);
    expect(m.update(1000, 1000)).toBe(1000);
    expect(m.update(4000, 2000)).toBe(2000);
  });
});

describe('storyboard', () => {
  const vtt = 'WEBVTT\n\n00:00:00.000 --> 00:00:02.000\nstoryboard.jpg#xywh=0,0,160,90\n\n00:00:02.000 --> 00:00:04.500\nstoryboard.jpg#xywh=160,0,160,90\n';
  const cues = parseStoryboard(vtt, 'http://h/play/tok/storyboard.vtt');
  it('parses cues with absolute sprite URLs', () => {
    expect(cues).toHaveLength(2);
    expect(cues[1]).toEqual({ start: 2, end: 4.5, url: 'http://h/play/tok/storyboard.jpg', x: 160, y: 0, w: 160, h: 90 });
  });
  it('finds the cue at a time', () => {
    expect(cueAt(cues, 0.5)?.x).toBe(0);
    expect(cueAt(cues, 2)?.x).toBe(160);
    expect(cueAt(cues, 99)?.x).toBe(160);
    expect(cueAt([], 1)).toBeNull();
  });
});

describe('resume', () => {
  it('resumes unfinished lectures only', () => {
    expect(resumePosition({ position_secs: 42, completed: false }, 600)).toBe(42);
    expect(resumePosition({ position_secs: 598, completed: false }, 600)).toBe(0);
    expect(resumePosition({ position_secs: 300, completed: true }, 600)).toBe(0);
    expect(resumePosition({ position_secs: 1, completed: false }, 600)).toBe(0);
    expect(resumePosition(null, 600)).toBe(0);
  });
});

describe('playback token renewal', () => {
  const token = 'AQAAAABnZ2dnC38sLppBTFWNDi9qG5x9EG4dKo87TE1en2B6i5wNHi8xAbCdEfGh';
  it('swaps the token of this server\'s playback URLs only', () => {
    const prefix = playPrefix(`http://h:1/play/${token}/master.m3u8`)!;
    expect(prefix).toBe('http://h:1/play/');
    expect(playPrefix(`https://h/lectern/play/${token}/master.m3u8`)).toBe('https://h/lectern/play/');
    expect(playPrefix('https://h/x.m3u8?next=/play/a/')).toBeNull();
    expect(withPlayToken(`http://h:1/play/${token}/v720/index.m3u8`, prefix, 'NEW')).toBe('http://h:1/play/NEW/v720/index.m3u8');
    expect(withPlayToken(`http://h:1/play/${token}/poster.jpg`, prefix, 'NEW')).toBe('http://h:1/play/NEW/poster.jpg');
    // Presigned storage URLs (direct delivery) stay as they are, even with /play/ in their path.
    const presigned = 'https://s3.example/play/assets/a/v720/seg.ts?X-Amz-Signature=x';
    expect(withPlayToken(presigned, prefix, 'NEW')).toBe(presigned);
    expect(withPlayToken('http://h:1/api/me', prefix, 'NEW')).toBe('http://h:1/api/me');
  });
  it('renews a minute early, or halfway for short lives, never in the past', () => {
    const now = 1_000_000_000_000;
    expect(renewDelayMs(now / 1000 + 3600, now)).toBe(3_540_000);
    expect(renewDelayMs(now / 1000 + 10, now)).toBe(5_000);
    expect(renewDelayMs(now / 1000 - 5, now)).toBe(0);
  });
});

describe('chapters', () => {
  it('reads chapter lines as a video description writes them', () => {
    const { chapters, error } = parseChapterLines('0:00 Intro\n\n1:05 - Fourier series\n1:02:03.5 Laplace\n');
    expect(error).toBeUndefined();
    expect(chapters).toEqual([
      { start_secs: 0, title: 'Intro' },
      { start_secs: 65, title: 'Fourier series' },
      { start_secs: 3723.5, title: 'Laplace' },
    ]);
    expect(chapterLines(chapters.slice(0, 2))).toBe('0:00 Intro\n1:05 Fourier series');
  });
  it('names the line that has no time', () => {
    expect(parseChapterLines('0:00 Intro\nFourier').error).toMatch(/^line 2:/);
    expect(parseChapterLines('0:75 Bad seconds').error).toMatch(/^line 1:/);
  });
  it('finds the chapter playing', () => {
    const list = [{ start_secs: 0, title: 'a' }, { start_secs: 60, title: 'b' }];
    expect(chapterAt(list, 59.9)?.title).toBe('a');
    expect(chapterAt(list, 60)?.title).toBe('b');
    expect(chapterAt([], 5)).toBeNull();
  });
});
