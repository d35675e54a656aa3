// Proposed chapters: the slides a lecture's slides job found (where a new slide comes
// on screen, and the title read from it), for the course's owner to review in the
// studio and publish as the lecture's chapters with the chapters API. Students see
// nothing of it until then. The rows and what they publish are plain data (tested in
// slides.test.ts); the panel only draws them.
import { Api, ApiError, slideThumbnail, type Chapter, type Lecture, type Slide } from './api';
import { errorText, h } from './dom';
import { formatDuration } from './format';

/** The chapters API takes titles of 1 to 200 characters. */
export const TITLE_MAX = 200;

/** One proposed chapter as the owner edits it. */
export interface ProposedRow {
  /** The slide's position, 0 first; "Slide k" is position + 1. */
  position: number;
  start_secs: number;
  /** As edited; empty publishes as "Slide k". */
  title: string;
  use: boolean;
  /** Folded into the row above: its start is dropped. */
  merged: boolean;
  /** What the merge changed on the row above (`into`), put back by `undoMerge`. */
  undo?: { into: number; title: string; use: boolean; gave: string };
}

/** The rows as proposed: each slide with its read title, used when a title was read. */
export function proposedRows(slides: Slide[]): ProposedRow[] {
  return [...slides]
    .sort((a, b) => a.start_secs - b.start_secs)
    .map((s) => ({ position: s.position, start_secs: s.start_secs, title: s.title ?? '', use: !!s.title?.trim(), merged: false }));
}

/** The row `i` folds into, the nearest one above it that is not merged itself; -1 if none. */
export function previousKept(rows: ProposedRow[], i: number): number {
  for (let j = i - 1; j >= 0; j--) if (!rows[j].merged) return j;
  return -1;
}

/** Row `i` merged into the one above: its start is dropped and its title discarded,
 * unless the row above has none, which then takes it (and is used if either was). */
export function mergeIntoPrevious(rows: ProposedRow[], i: number): ProposedRow[] {
  const j = previousKept(rows, i);
  if (j < 0 || rows[i].merged) return rows;
  const head = rows[j];
  const cur = rows[i];
  const takes = !head.title.trim() && !!cur.title.trim();
  const next = rows.slice();
  if (takes) next[j] = { ...head, title: cur.title, use: head.use || cur.use };
  next[i] = { ...cur, merged: true, undo: takes ? { into: j, title: head.title, use: head.use, gave: cur.title } : undefined };
  return next;
}

/** Row `i` back on its own; the row above gets back what the merge gave it, unless the
 * owner has since written another title there. */
export function undoMerge(rows: ProposedRow[], i: number): ProposedRow[] {
  const cur = rows[i];
  if (!cur?.merged) return rows;
  const next = rows.slice();
  next[i] = { ...cur, merged: false, undo: undefined };
  const u = cur.undo;
  if (u && next[u.into] && next[u.into].title === u.gave) next[u.into] = { ...next[u.into], title: u.title, use: u.use };
  return next;
}

/** A title as the chapters API takes it: trimmed, at most TITLE_MAX characters. */
export function cleanTitle(title: string): string {
  return Array.from(title.trim()).slice(0, TITLE_MAX).join('').trim();
}

/** A first chapter that starts this close to the lecture's start starts it (at 0): a
 * slide is found a frame or two in, and the chapters should cover the opening. */
export const OPENING_SECS = 1;

/** What "Publish" sends: the used rows that are not merged, in time order, each with
 * its edited title or "Slide k". */
export function chaptersToPublish(rows: ProposedRow[]): Chapter[] {
  return rows
    .filter((r) => r.use && !r.merged)
    .sort((a, b) => a.start_secs - b.start_secs)
    .map((r, i) => ({
      start_secs: i === 0 && r.start_secs < OPENING_SECS ? 0 : r.start_secs,
      title: cleanTitle(r.title) || `Slide ${r.position + 1}`,
    }));
}

/** A hint of what is on the slide: its first line of text that is not the title
 * already in the input; '' if there is none. */
export function slideHint(slide: Pick<Slide, 'title' | 'text'>): string {
  const title = slide.title?.trim().toLowerCase();
  return slide.text.split('\n').map((l) => l.trim()).find((l) => l && l.toLowerCase() !== title) ?? '';
}

/** "Publish 1 chapter", "Publish 7 chapters". */
export function chapterCount(n: number): string {
  return `${n} chapter${n === 1 ? '' : 's'}`;
}

/** A fingerprint of the slides as found: edits are kept while it stays the same. */
function fingerprint(slides: Slide[]): string {
  return slides.map((s) => `${s.position}@${s.start_secs}:${s.title ?? ''}`).join('|');
}

// --- the studio's panel ----------------------------------------------------------------

const DISMISSED = 'lectern.slides-dismissed.';

export function isDismissed(lectureId: string): boolean {
  try {
    return localStorage.getItem(DISMISSED + lectureId) === '1';
  } catch {
    return false;
  }
}

function dismiss(lectureId: string): void {
  try {
    localStorage.setItem(DISMISSED + lectureId, '1');
  } catch {
    /* private mode: hidden until the page is drawn again */
  }
}

// Kept across the studio's re-renders of its lecture rows (on every live event), so an
// owner's edits, the panel's open state and its thumbnails' object URLs (revoked when
// the panel is drawn again) outlive them.
const drafts = new Map<string, { fingerprint: string; rows: ProposedRow[] }>();
const opened = new Map<string, boolean>();
const thumbnails = new Map<string, { urls: string[]; abort: AbortController }>();

function releaseThumbnails(lectureId: string): void {
  const held = thumbnails.get(lectureId);
  if (!held) return;
  held.abort.abort();
  held.urls.forEach((u) => URL.revokeObjectURL(u));
  thumbnails.delete(lectureId);
}

export interface SlidesPanel {
  element: HTMLElement;
  /** Asks for the slides again (on a `slides_found` event). */
  refresh(): void;
}

/** The panel for one lecture of the course's owner, or null when there is nothing to
 * propose: not ready yet, sound only, or dismissed in this browser. It hides itself if
 * the server refuses (not the owner). `onPublished` gets the chapters as published. */
export function slidesPanel(lecture: Lecture, onPublished: (chapters: Chapter[]) => void): SlidesPanel | null {
  if (lecture.status !== 'ready' || lecture.media_kind === 'audio' || isDismissed(lecture.id)) return null;
  const id = lecture.id;
  const summary = h('summary', {}, 'Proposed chapters');
  const body = h('div', { class: 'slides-body' }, h('p', { class: 'meta' }, 'Looking for slides…'));
  const element = h('details', { class: 'slides-panel', 'data-lecture': id }, summary, body);
  element.addEventListener('toggle', () => opened.set(id, element.open));

  // Only the answer to the latest request is drawn.
  let asked = 0;
  const refresh = async () => {
    const mine = ++asked;
    let slides: Slide[];
    let published: Chapter[];
    try {
      [slides, published] = await Promise.all([Api.slides(id), Api.chapters(id)]);
    } catch (e) {
      if (mine !== asked) return;
      if (e instanceof ApiError && e.status === 403) {
        element.hidden = true;
        return;
      }
      body.replaceChildren(h('p', { class: 'error' }, errorText(e)));
      return;
    }
    if (mine !== asked || isDismissed(id)) return;
    draw(slides, published);
  };

  const draw = (slides: Slide[], published: Chapter[]) => {
    releaseThumbnails(id);
    summary.textContent = slides.length ? `Proposed chapters (${slides.length})` : 'Proposed chapters: none found yet';
    // Open where there is something to review and nothing published yet, unless the
    // owner opened or closed it themselves.
    element.open = opened.get(id) ?? (slides.length > 0 && published.length === 0);
    const dismissButton = h('button', { type: 'button', onclick: () => {
      dismiss(id);
      releaseThumbnails(id);
      element.hidden = true;
    } }, 'Dismiss');
    if (!slides.length) {
      body.replaceChildren(
        h('p', {}, h('strong', {}, 'No slides found yet')),
        h('p', { class: 'meta' }, 'Lectern looks for slides in the picture once a lecture is ready, which takes a minute or so; they appear here by themselves. A lecture without slides (a talking head, a whiteboard) has none to propose.'),
        h('div', { class: 'row' }, dismissButton),
      );
      return;
    }
    const print = fingerprint(slides);
    const draft = drafts.get(id);
    let rows = draft?.fingerprint === print ? draft.rows : proposedRows(slides);
    const bySlide = new Map(slides.map((s) => [s.position, s]));
    const images = new Map<number, HTMLImageElement>();

    const list = h('ol', { class: 'slide-list' });
    const publish = h('button', { type: 'button', class: 'primary' });
    const error = h('p', { class: 'error', role: 'alert' });
    const status = h('p', { class: 'ok', role: 'status' });
    const replaces = h('p', { class: 'meta' });
    const showReplaces = (n: number) => {
      replaces.textContent = n ? `Publishing replaces the ${chapterCount(n)} published now.` : '';
    };
    showReplaces(published.length);

    const update = (next: ProposedRow[], redraw: boolean) => {
      rows = next;
      drafts.set(id, { fingerprint: print, rows });
      const n = chaptersToPublish(rows).length;
      publish.textContent = `Publish ${chapterCount(n)}`;
      publish.disabled = n === 0;
      if (redraw) list.replaceChildren(...rows.map(row));
    };

    // A merge or its undo draws the rows again; the focus stays on the row's button.
    const redraw = (next: ProposedRow[], i: number) => {
      update(next, true);
      list.children[i]?.querySelector<HTMLButtonElement>('.slide-fields button')?.focus();
    };

    const row = (r: ProposedRow, i: number): HTMLElement => {
      const slide = bySlide.get(r.position);
      const k = r.position + 1;
      const headId = `slide-${id}-${r.position}`;
      const title = h('input', {
        type: 'text', value: r.title, placeholder: 'Untitled slide', maxlength: TITLE_MAX,
        'aria-label': `Title of slide ${k}`, disabled: r.merged,
      });
      title.addEventListener('input', () => update(rows.map((x, j) => (j === i ? { ...x, title: title.value } : x)), false));
      const use = h('input', { type: 'checkbox', checked: r.use, disabled: r.merged, 'aria-describedby': headId });
      use.addEventListener('change', () => update(rows.map((x, j) => (j === i ? { ...x, use: use.checked } : x)), false));
      const hint = slide ? slideHint(slide) : '';
      return h('li', { class: 'slide', 'data-position': r.position, 'data-merged': r.merged ? 'true' : null },
        images.get(r.position) ?? null,
        h('div', { class: 'slide-fields' },
          h('div', { class: 'row' },
            h('span', { id: headId }, h('strong', {}, `Slide ${k}`), ' ', h('span', { class: 'time' }, formatDuration(r.start_secs))),
            h('span', { class: 'spacer' }),
            h('label', { class: 'check' }, use, 'Use'),
            r.merged
              ? h('button', { type: 'button', 'aria-describedby': headId, onclick: () => redraw(undoMerge(rows, i), i) }, 'Undo merge')
              : h('button', {
                  type: 'button', 'aria-describedby': headId, disabled: previousKept(rows, i) < 0,
                  title: 'Drop this slide’s start; the slide above keeps its title, or takes this one if it has none',
                  onclick: () => redraw(mergeIntoPrevious(rows, i), i),
                }, 'Merge into previous'),
          ),
          title,
          r.merged ? h('p', { class: 'meta' }, 'Merged into the slide above.') : null,
          hint ? h('p', { class: 'meta slide-hint' }, hint) : null,
        ),
      );
    };

    publish.addEventListener('click', async () => {
      const chapters = chaptersToPublish(rows);
      error.textContent = '';
      status.textContent = '';
      publish.disabled = true;
      try {
        const now = await Api.putChapters(id, chapters);
        status.textContent = `Published ${chapterCount(now.length)}.`;
        showReplaces(now.length);
        onPublished(now);
      } catch (e) {
        error.textContent = errorText(e);
      } finally {
        publish.disabled = chaptersToPublish(rows).length === 0;
      }
    });

    // Thumbnails: each in a box of its own size, filled in as it arrives.
    const held = { urls: [] as string[], abort: new AbortController() };
    thumbnails.set(id, held);
    for (const s of slides) {
      const img = h('img', { class: 'slide-thumb', alt: '', width: 320, height: 180 });
      images.set(s.position, img);
      slideThumbnail(s.thumbnail_url, held.abort.signal)
        .then((blob) => {
          if (held.abort.signal.aborted) return;
          const url = URL.createObjectURL(blob);
          held.urls.push(url);
          img.src = url;
        })
        .catch(() => img.classList.add('missing'));
    }

    update(rows, true);
    body.replaceChildren(
      h('p', { class: 'meta' }, 'Found on the lecture’s slides, with the title read from each. Students see them only once you publish.'),
      list,
      replaces,
      h('div', { class: 'row' }, publish, dismissButton),
      error,
      status,
    );
  };

  void refresh();
  return { element, refresh: () => void refresh() };
}
