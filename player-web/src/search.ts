// Search hits inside lectures: a lecture's title, words said in it (its captions) or
// shown on its slides, with the time. Each hit links to the player at that moment.
import { Api, type SearchHit } from './api';
import { errorText, h } from './dom';
import { formatDuration } from './format';

/** The slide's line that holds one of the words looked for, else its first line. */
export function matchingLine(text: string, q = ''): string {
  const words = q.toLowerCase().split(/[^\p{L}\p{N}]+/u).filter(Boolean);
  const lines = text.split('\n').filter((l) => l.trim());
  return lines.find((l) => words.some((w) => l.toLowerCase().includes(w))) ?? lines[0] ?? '';
}

export function hitLink(hit: SearchHit, q = ''): HTMLElement | null {
  if (!hit.lecture_id) return null;
  const at = hit.start_secs ?? 0;
  const href = `#/watch/${hit.lecture_id}${hit.start_secs != null ? `?t=${Math.floor(at)}` : ''}`;
  return h('li', { class: 'hit', 'data-kind': hit.kind },
    h('a', { href },
      h('strong', {}, hit.lecture_title ?? ''),
      hit.start_secs != null ? h('span', { class: 'time' }, ` at ${formatDuration(at)}`) : null),
    h('span', { class: 'meta' }, ` · ${hit.course_title}`),
    hit.kind === 'transcript' ? h('q', {}, hit.text) : null,
    hit.kind === 'screen' ? h('span', { class: 'on-screen' }, ' on screen: ', h('q', {}, matchingLine(hit.text, q))) : null,
  );
}

/** "Found in lectures" for a search: lecture titles and words said, best first. */
export function lectureHits(q: string, course?: string): HTMLElement {
  const list = h('ol', { class: 'hits' });
  const box = h('section', { class: 'lecture-hits', 'aria-label': 'Found in lectures', hidden: true },
    h('h2', {}, 'Found in lectures'), list);
  Api.search(q, course)
    .then((res) => {
      const items = res.items.map((hit) => hitLink(hit, q)).filter((n): n is HTMLElement => !!n);
      list.replaceChildren(...items);
      box.hidden = items.length === 0;
    })
    .catch((e) => {
      list.replaceChildren(h('li', { class: 'error' }, errorText(e)));
      box.hidden = false;
    });
  return box;
}
