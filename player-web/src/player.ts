// The watch page's player: hls.js with adaptive bit rate (native HLS only where hls.js
// cannot run), a quality menu, captions (menu, `c`, the choice remembered), playback
// speed, storyboard thumbnails over the seek bar, keyboard shortcuts, and resume.
import Hls from 'hls.js';
import { beaconSession, type BeaconSession } from './beacons';
import { h } from './dom';
import { chapterAt, cueAt, formatDuration, levelLabel, parseStoryboard, playPrefix, renewDelayMs, withPlayToken, type StoryboardCue } from './format';
import type { Chapter, PlaybackGrant } from './api';

export interface PlayerOptions {
  startAt: number;
  /** A new grant for the same lecture. The player asks for one before its token
   * expires, so a long lecture or a long pause outlives the token. */
  renew?: () => Promise<PlaybackGrant>;
  onTime?: (t: number) => void;
  onPause?: (t: number) => void;
  onEnded?: () => void;
}

export interface Player {
  element: HTMLElement;
  video: HTMLVideoElement;
  hls: Hls | null;
  /** Marks the chapters on the seek bar and names them over it. */
  setChapters(chapters: Chapter[], duration: number): void;
  seek(t: number): void;
  destroy(): void;
}

const SPEEDS = [0.75, 1, 1.25, 1.5, 1.75, 2];

export function createPlayer(grant: PlaybackGrant, opts: PlayerOptions): Player {
  const video = h('video', { playsinline: true, preload: 'metadata', poster: grant.poster_url ?? undefined, 'aria-label': 'Lecture video' });
  const playBtn = h('button', { class: 'ctl', type: 'button', 'aria-label': 'Play' }, '▶');
  const seek = h('input', { type: 'range', class: 'seek', min: 0, max: 0, step: 0.1, value: 0, 'aria-label': 'Seek' });
  const time = h('span', { class: 'time', 'aria-live': 'off' }, '0:00 / 0:00');
  const muteBtn = h('button', { class: 'ctl', type: 'button', 'aria-label': 'Mute' }, 'Mute');
  const volume = h('input', { type: 'range', class: 'volume', min: 0, max: 1, step: 0.05, value: 1, 'aria-label': 'Volume' });
  const speed = h('select', { class: 'speed', 'aria-label': 'Playback speed' }, ...SPEEDS.map((s) => h('option', { value: s, selected: s === 1 }, `${s}×`)));
  const quality = h('select', { class: 'quality', 'aria-label': 'Quality' }, h('option', { value: -1 }, 'Auto'));
  const captions = h('select', { class: 'captions', 'aria-label': 'Captions', hidden: true }, h('option', { value: 'off' }, 'Captions off'));
  const fullBtn = h('button', { class: 'ctl', type: 'button', 'aria-label': 'Full screen' }, 'Full screen');
  const thumb = h('div', { class: 'thumb', 'aria-hidden': 'true' }, h('div', { class: 'thumb-img' }), h('span', { class: 'thumb-chapter' }), h('span', { class: 'thumb-time' }));
  const marks = h('div', { class: 'chapter-marks', 'aria-hidden': 'true' });
  const controls = h('div', { class: 'controls' }, playBtn, h('div', { class: 'seekwrap' }, seek, marks, thumb), time, muteBtn, volume, speed, quality, captions, fullBtn);
  const element = h('div', { class: 'player', tabindex: 0, role: 'region', 'aria-label': 'Video player (space: play/pause, arrows: seek and volume, c: captions, f: full screen, m: mute)' }, video, controls);
  // Viewing beacons for the owner's analytics, when the grant carries their token.
  let beacons: BeaconSession | null = null;
  try {
    if (grant.beacon_token) beacons = beaconSession(video, grant.beacon_token);
  } catch {
    /* playback does not depend on them */
  }

  // Every request hls.js makes under /play/ carries the newest token: playlists and
  // segments are resolved against the first grant's URL, so they are rewritten.
  const absolute = (url: string) => new URL(url, location.href).href;
  const first = absolute(grant.url);
  const prefix = playPrefix(first);
  const tokenOf = (url: string) => (prefix && url.startsWith(prefix) ? url.slice(prefix.length).split('/')[0] : '');
  let token = tokenOf(first);
  const current = (url: string) => (prefix && token ? withPlayToken(url, prefix, token) : url);
  let renewTimer = 0;
  let renewing: Promise<void> | null = null;
  let destroyed = false;
  const renew = (): Promise<void> => {
    if (!opts.renew || destroyed) return Promise.resolve();
    window.clearTimeout(renewTimer);
    renewing ??= opts
      .renew()
      .then((fresh) => {
        if (destroyed) return;
        token = tokenOf(absolute(fresh.url)) || token;
        if (fresh.beacon_token) beacons?.setToken(fresh.beacon_token);
        renewTimer = window.setTimeout(renew, renewDelayMs(fresh.expires_at, Date.now()));
      })
      .catch(() => {
        if (!destroyed) renewTimer = window.setTimeout(renew, 10_000);
      })
      .finally(() => {
        renewing = null;
      });
    return renewing;
  };
  if (opts.renew) renewTimer = window.setTimeout(renew, renewDelayMs(grant.expires_at, Date.now()));

  let hls: Hls | null = null;
  let started = false;
  const start = () => {
    if (!started && opts.startAt > 0) video.currentTime = opts.startAt;
    started = true;
  };

  // hls.js first: Chromium answers "maybe" to canPlayType for HLS without playing it.
  if (Hls.isSupported()) {
    // A lecture still being encoded is an EVENT playlist, which hls.js would start at
    // its live edge: lectures start at the start (or where the student left off).
    hls = new Hls({
      startPosition: opts.startAt > 0 ? opts.startAt : 0,
      capLevelToPlayerSize: false,
      xhrSetup: (xhr, url) => {
        const fresh = current(url);
        if (fresh !== url) xhr.open('GET', fresh, true);
      },
    });
    hls.loadSource(grant.url);
    hls.attachMedia(video);
    hls.on(Hls.Events.MANIFEST_PARSED, () => {
      started = true;
      const levels = hls!.levels.map((l, i) => ({ i, l })).sort((a, b) => b.l.height - a.l.height);
      for (const { i, l } of levels) quality.append(h('option', { value: i }, levelLabel(l.width, l.height)));
      updateQualityLabel();
    });
    hls.on(Hls.Events.LEVEL_SWITCHED, (_e, data) => {
      updateQualityLabel();
      beacons?.switched(hls!.levels[data.level]?.height ?? 0);
    });
    hls.on(Hls.Events.SUBTITLE_TRACKS_UPDATED, () => subtitles.list(hls!.subtitleTracks.map((t) => ({ lang: t.lang ?? '', name: t.name }))));
    hls.on(Hls.Events.ERROR, (_e, data) => {
      // Refused: the token expired (the tab slept through its renewal, or the server's
      // key changed). hls.js retries the request, with the new token once it is here.
      const refused = data.response?.code === 403;
      // Stalls are counted as rebuffers, not errors.
      const stall = data.details === Hls.ErrorDetails.BUFFER_STALLED_ERROR || data.details === Hls.ErrorDetails.BUFFER_NUDGE_ON_STALL || data.details === Hls.ErrorDetails.BUFFER_SEEK_OVER_HOLE;
      if (!stall) beacons?.error(data.fatal);
      if (refused) void renew();
      if (!data.fatal) return;
      if (data.type === Hls.ErrorTypes.NETWORK_ERROR) {
        if (refused) void renew().then(() => hls?.startLoad());
        else hls!.startLoad();
      } else if (data.type === Hls.ErrorTypes.MEDIA_ERROR) hls!.recoverMediaError();
    });
  } else if (video.canPlayType('application/vnd.apple.mpegurl')) {
    video.src = grant.url;
    video.addEventListener('loadedmetadata', start, { once: true });
    video.textTracks.addEventListener('addtrack', () => subtitles.list(nativeTracks().map((t) => ({ lang: t.language, name: t.label }))));
    quality.disabled = true;
  } else {
    element.prepend(h('p', { class: 'error' }, 'This browser cannot play HLS video.'));
  }

  // Captions: hls.js's subtitle tracks, or Safari's own text tracks.
  const nativeTracks = () => [...video.textTracks].filter((t) => t.kind === 'subtitles' || t.kind === 'captions');
  const subtitles = captionsControl(captions, (i) => {
    if (hls) {
      hls.subtitleDisplay = i >= 0;
      hls.subtitleTrack = i;
    } else nativeTracks().forEach((t, n) => (t.mode = n === i ? 'showing' : 'disabled'));
    element.dataset.captions = i >= 0 ? captions.value : 'off';
  });

  function updateQualityLabel() {
    if (!hls) return;
    const auto = quality.options[0];
    const current = hls.levels[hls.currentLevel];
    auto.textContent = hls.autoLevelEnabled && current ? `Auto (${levelLabel(current.width, current.height)})` : 'Auto';
    quality.value = String(hls.autoLevelEnabled ? -1 : hls.currentLevel);
    element.dataset.level = String(hls.currentLevel);
  }
  quality.addEventListener('change', () => {
    if (!hls) return;
    const level = Number(quality.value);
    // An explicit choice switches now; Auto hands control back to ABR.
    hls.currentLevel = level;
    if (level === -1) hls.nextAutoLevel = -1;
    updateQualityLabel();
  });

  const toggle = () => (video.paused ? video.play().catch(() => {}) : video.pause());
  playBtn.addEventListener('click', toggle);
  video.addEventListener('click', toggle);
  video.addEventListener('play', () => {
    playBtn.textContent = '❚❚';
    playBtn.setAttribute('aria-label', 'Pause');
  });
  video.addEventListener('pause', () => {
    playBtn.textContent = '▶';
    playBtn.setAttribute('aria-label', 'Play');
    opts.onPause?.(video.currentTime);
  });
  video.addEventListener('ended', () => opts.onEnded?.());
  video.addEventListener('durationchange', () => (seek.max = String(video.duration || 0)));
  video.addEventListener('timeupdate', () => {
    if (document.activeElement !== seek) seek.value = String(video.currentTime);
    time.textContent = `${formatDuration(video.currentTime)} / ${formatDuration(video.duration)}`;
    opts.onTime?.(video.currentTime);
  });
  seek.addEventListener('input', () => (video.currentTime = Number(seek.value)));
  speed.addEventListener('change', () => (video.playbackRate = Number(speed.value)));
  volume.addEventListener('input', () => {
    video.volume = Number(volume.value);
    video.muted = video.volume === 0;
  });
  const mute = () => {
    video.muted = !video.muted;
    muteBtn.textContent = video.muted ? 'Unmute' : 'Mute';
    muteBtn.setAttribute('aria-label', video.muted ? 'Unmute' : 'Mute');
  };
  muteBtn.addEventListener('click', mute);
  const fullscreen = () => (document.fullscreenElement ? document.exitFullscreen() : element.requestFullscreen()).catch(() => {});
  fullBtn.addEventListener('click', fullscreen);

  element.addEventListener('keydown', (e) => {
    const target = e.target as HTMLElement;
    if (target.tagName === 'SELECT' || (target.tagName === 'INPUT' && e.key !== ' ')) return;
    const handled = true;
    switch (e.key) {
      case ' ':
      case 'k':
        toggle();
        break;
      case 'ArrowRight':
        video.currentTime = Math.min(video.duration || Infinity, video.currentTime + 5);
        break;
      case 'ArrowLeft':
        video.currentTime = Math.max(0, video.currentTime - 5);
        break;
      case 'ArrowUp':
        video.volume = Math.min(1, video.volume + 0.1);
        volume.value = String(video.volume);
        break;
      case 'ArrowDown':
        video.volume = Math.max(0, video.volume - 0.1);
        volume.value = String(video.volume);
        break;
      case 'f':
        fullscreen();
        break;
      case 'm':
        mute();
        break;
      case 'c':
        subtitles.toggle();
        break;
      default:
        return;
    }
    if (handled) e.preventDefault();
  });

  // Storyboard thumbnails while hovering the seek bar.
  let cues: StoryboardCue[] = [];
  if (grant.storyboard_url) {
    const vttUrl = new URL(grant.storyboard_url, location.href).toString();
    fetch(vttUrl)
      .then((r) => (r.ok ? r.text() : ''))
      .then((text) => (cues = parseStoryboard(text, vttUrl)))
      .catch(() => {});
  }
  seek.addEventListener('mousemove', (e) => {
    const rect = seek.getBoundingClientRect();
    const frac = Math.min(1, Math.max(0, (e.clientX - rect.left) / rect.width));
    const t = frac * (video.duration || 0);
    const cue = cueAt(cues, t);
    const img = thumb.firstElementChild as HTMLElement;
    if (cue) {
      img.style.width = `${cue.w}px`;
      img.style.height = `${cue.h}px`;
      img.style.backgroundImage = `url("${current(cue.url)}")`;
      img.style.backgroundPosition = `-${cue.x}px -${cue.y}px`;
      img.hidden = false;
    } else {
      img.hidden = true;
    }
    (thumb.lastElementChild as HTMLElement).textContent = formatDuration(t);
    (thumb.children[1] as HTMLElement).textContent = chapterAt(chapters, t)?.title ?? '';
    thumb.style.left = `${frac * 100}%`;
    thumb.classList.add('show');
  });
  seek.addEventListener('mouseleave', () => thumb.classList.remove('show'));

  let chapters: Chapter[] = [];
  const setChapters = (list: Chapter[], duration: number) => {
    chapters = list;
    marks.replaceChildren(...(duration > 0 ? list.filter((c) => c.start_secs > 0) : []).map((c) => {
      const mark = h('span', { class: 'chapter-mark', title: c.title });
      // Through the CSSOM: the page's policy refuses style attributes.
      mark.style.left = `${(100 * c.start_secs) / duration}%`;
      return mark;
    }));
  };

  return {
    element,
    video,
    get hls() {
      return hls;
    },
    setChapters,
    seek(t: number) {
      video.currentTime = t;
      element.focus();
    },
    destroy() {
      destroyed = true;
      beacons?.destroy();
      window.clearTimeout(renewTimer);
      hls?.destroy();
      video.removeAttribute('src');
      video.load();
    },
  } as Player;
}

const CAPTIONS_KEY = 'lectern.captions';

interface CaptionChoice {
  lang: string;
  name: string;
}

/** The captions menu: fills it with the lecture's languages and applies the viewer's
 * remembered choice (a language, or off; off when none was made). `c` turns captions
 * off, or back on in the last language chosen (else the first, the owner's default). */
function captionsControl(select: HTMLSelectElement, apply: (index: number) => void) {
  let tracks: CaptionChoice[] = [];
  let last = localStorage.getItem(CAPTIONS_KEY) ?? 'off';
  const choose = (lang: string, remember: boolean) => {
    const i = tracks.findIndex((t) => t.lang === lang);
    select.value = i >= 0 ? lang : 'off';
    if (remember) localStorage.setItem(CAPTIONS_KEY, select.value);
    if (i >= 0) last = lang;
    apply(i);
  };
  select.addEventListener('change', () => choose(select.value, true));
  return {
    list(found: CaptionChoice[]) {
      tracks = found.filter((t) => t.lang);
      select.replaceChildren(h('option', { value: 'off' }, 'Captions off'), ...tracks.map((t) => h('option', { value: t.lang }, t.name)));
      select.hidden = tracks.length === 0;
      choose(localStorage.getItem(CAPTIONS_KEY) ?? 'off', false);
    },
    toggle() {
      if (!tracks.length) return;
      const on = tracks.some((t) => t.lang === last) ? last : tracks[0].lang;
      choose(select.value === 'off' ? on : 'off', true);
    },
  };
}
