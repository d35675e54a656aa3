// The studio's captions editor for one lecture: the languages it has (the default
// first), making one the default, removing one, and adding or replacing a language
// from a WebVTT or SRT file. The server checks the file and names a fault's line.
import { Api, type CaptionTrack, type Lecture } from './api';
import { errorText, h, toast } from './dom';

const COMMON = ['en', 'es', 'fr', 'de', 'pt-BR', 'pt-PT', 'it', 'nl', 'pl', 'sv', 'tr', 'uk', 'ru', 'ar', 'hi', 'zh-Hans', 'zh-Hant', 'ja', 'ko'];

/** A language's name in the viewer's language ("pt-BR" → "Brazilian Portuguese"). */
export function languageName(tag: string): string {
  try {
    return new Intl.DisplayNames([navigator.language || 'en'], { type: 'language' }).of(tag) ?? tag;
  } catch {
    return tag;
  }
}

export function captionsEditor(lecture: Lecture): HTMLElement {
  const summary = h('summary', {}, 'Captions');
  const list = h('ul', { class: 'caption-list' });
  const box = h('details', { class: 'captions-editor' }, summary, list, addForm(lecture, () => void refresh()));
  const refresh = async () => {
    const tracks = await Api.captions(lecture.id).catch(() => [] as CaptionTrack[]);
    summary.textContent = tracks.length ? `Captions (${tracks.map((t) => t.language).join(', ')})` : 'Captions';
    list.replaceChildren(...tracks.map((t) => trackRow(lecture, t, refresh)));
  };
  void refresh();
  return box;
}

function trackRow(lecture: Lecture, t: CaptionTrack, refresh: () => Promise<void>): HTMLElement {
  const act = (work: Promise<unknown>) => work.then(refresh).catch((e) => toast(errorText(e)));
  return h('li', { 'data-language': t.language },
    h('span', {}, `${t.label} (${t.language}), ${t.cue_count} cues`),
    t.default ? h('span', { class: 'badge default-captions' }, 'Default') : h('button', {
      type: 'button', 'aria-label': `Make ${t.label} the default captions`,
      onclick: () => act(Api.patchCaptions(lecture.id, t.language, { default: true })),
    }, 'Make default'),
    h('button', {
      type: 'button', class: 'danger', 'aria-label': `Delete the ${t.label} captions`,
      onclick: () => confirm(`Delete the ${t.label} captions?`) && act(Api.deleteCaptions(lecture.id, t.language)),
    }, 'Delete'),
  );
}

function addForm(lecture: Lecture, done: () => void): HTMLElement {
  const listId = `caption-languages-${lecture.id}`;
  const language = h('input', { type: 'text', list: listId, required: true, placeholder: 'en', size: 8, 'aria-label': 'Caption language' });
  const label = h('input', { type: 'text', required: true, maxlength: 60, placeholder: 'English', 'aria-label': 'Caption label' });
  const file = h('input', { type: 'file', accept: '.vtt,.srt,text/vtt', required: true, 'aria-label': 'Caption file' });
  const makeDefault = h('input', { type: 'checkbox' });
  const error = h('p', { class: 'error', role: 'alert' });
  let named = '';
  language.addEventListener('input', () => {
    // Fill the label from the language until the owner writes one of their own.
    if (!label.value || label.value === named) label.value = named = languageName(language.value.trim());
  });
  const form = h('form', { class: 'caption-form' },
    h('datalist', { id: listId }, ...COMMON.map((tag) => h('option', { value: tag }, languageName(tag)))),
    language, label, file,
    h('label', {}, makeDefault, ' Default'),
    h('button', { type: 'submit' }, 'Add captions'),
    error,
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const chosen = file.files?.[0];
    if (!chosen) return;
    error.textContent = '';
    try {
      await Api.putCaptions(lecture.id, language.value.trim(), label.value.trim(), chosen, makeDefault.checked);
      toast(`Captions saved: ${label.value.trim()}.`);
      form.reset();
      named = '';
      done();
    } catch (err) {
      error.textContent = errorText(err);
    }
  });
  return form;
}
