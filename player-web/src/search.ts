// Search hits inside lectures: a lecture's title, or words said in it (its captions)
// with the time they are said. Each hit links to the player at that moment.
import { Api, type SearchHit } from './api';
import { errorText, h } from './dom';
import { formatDuration } from './format';

export function hitLink(hit: SearchHit): HTMLElement | null {
  if (!hit.lecture_id) return null;
  const at = hit.start_secs ?? 0;
  const href = `#/watch/${hit.lecture_id}${hit.start_secs != null ? `?t=${Math.floor(at)}` : ''}`;
  return h('li', { class: 'hit', 'data-kind': hit.kind },
    h('a', { href },
      h('strong', {}, hit.lecture_title ?? ''),
      hit.start_secs != null ? h('span', { class: 'time' }, ` at ${formatDuration(at)}`) : null),
    h('span', { class: 'meta' }, ` · ${hit.course_title}`),
    hit.kind === 'transcript' ? h('q', {}, hit.text) : null,
  );
}

/** "Found in lectures" for a search: lecture titles and words said, best first. */
export function lectureHits(q: string, course?: string): HTMLElement {
  const list = h('ol', { class: 'hits' });
  const box = h('section', { class: 'lecture-hits', 'aria-label': 'Found in lectures', hidden: true },
    h('h2', {}, 'Found in lectures'), list);
  Api.search(q, course)
    .then((res) => {
      const items = res.items.map(hitLink).filter((n): n is HTMLElement => !!n);
      list.replaceChildren(...items);
      box.hidden = items.length === 0;
    })
    .catch((e) => {
      list.replaceChildren(h('li', { class: 'error' }, errorText(e)));
      box.hidden = false;
    });
  return box;
}
