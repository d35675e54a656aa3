// Chapters: the studio's editor (one chapter per line, "1:05 Fourier series", or a
// WebVTT chapters file) and the watch page's list, each chapter a link to its time.
import { Api, type Chapter, type Lecture } from './api';
import { errorText, h, toast } from './dom';
import { chapterLines, formatDuration, parseChapterLines } from './format';

/** The studio's editor; `show` puts chapters published elsewhere (proposed chapters)
 * in it, as the server answered them. */
export interface ChaptersEditor { element: HTMLElement; show(chapters: Chapter[]): void }

export function chaptersEditor(lecture: Lecture): ChaptersEditor {
  const summary = h('summary', {}, 'Chapters');
  const lines = h('textarea', { rows: 5, placeholder: '0:00 Introduction\n4:30 Fourier series', 'aria-label': 'Chapters, one per line: a time, then a title' });
  const file = h('input', { type: 'file', accept: '.vtt,text/vtt', 'aria-label': 'Chapters file (WebVTT)' });
  const error = h('p', { class: 'error', role: 'alert' });
  const show = (chapters: Chapter[]) => {
    summary.textContent = chapters.length ? `Chapters (${chapters.length})` : 'Chapters';
    lines.value = chapterLines(chapters);
  };
  const save = async (body: Chapter[] | Blob) => {
    error.textContent = '';
    try {
      show(await Api.putChapters(lecture.id, body));
      toast('Chapters saved.');
    } catch (e) {
      error.textContent = errorText(e);
    }
  };
  const form = h('form', { class: 'chapters-form' }, lines,
    h('div', { class: 'row' }, h('button', { type: 'submit' }, 'Save chapters'), h('label', {}, 'or a WebVTT file: ', file)),
    error);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const parsed = parseChapterLines(lines.value);
    if (parsed.error) error.textContent = parsed.error;
    else void save(parsed.chapters);
  });
  file.addEventListener('change', () => file.files?.[0] && void save(file.files[0]));
  Api.chapters(lecture.id).then(show).catch(() => {});
  return { element: h('details', { class: 'chapters-editor' }, summary, form), show };
}

/** The watch page's chapter list: each entry links to its time, and seeks in place. */
export function chapterList(lectureId: string, chapters: Chapter[], seek: (t: number) => void): HTMLElement | null {
  if (!chapters.length) return null;
  return h('nav', { class: 'chapters', 'aria-label': 'Chapters' },
    h('h2', {}, 'Chapters'),
    h('ol', {}, ...chapters.map((c) => h('li', {},
      h('a', {
        href: `#/watch/${lectureId}?t=${Math.floor(c.start_secs)}`,
        onclick: (e: Event) => {
          e.preventDefault();
          seek(c.start_secs);
          history.replaceState(null, '', `#/watch/${lectureId}?t=${Math.floor(c.start_secs)}`);
        },
      }, h('span', { class: 'time' }, formatDuration(c.start_secs)), ' ', c.title)))));
}
