// Attachments: files an owner hands out with a course or one of its lectures (slides,
// PDFs, code archives). The studio's panel adds them (a record first, then the bytes by
// tus; the server reads their kind and marks them ready or refused) and removes them;
// students download the ready ones from the course and watch pages.
import { Api, ApiError, type Attachment, type Lecture } from './api';
import { errorText, h, toast } from './dom';
import { fileKind, formatBytes } from './format';
import { FileUpload } from './upload';

const STATE_LABEL: Record<Attachment['state'], string> = { uploading: 'Uploading', ready: 'Ready', refused: 'Refused' };

/** The studio's panel. `lectures` gives the course's lectures as they are now: the
 * studio adds and renames them while this panel stays on the page. */
export function attachmentsPanel(courseId: string, lectures: () => Lecture[]): HTMLElement {
  const summary = h('summary', {}, 'Attachments (slides, PDFs, code)');
  const list = h('ul', { class: 'attachment-list' });
  // This page's uploads and their progress bars, kept across re-renders of the list.
  const uploads = new Map<string, FileUpload>();
  const bars = new Map<string, HTMLProgressElement>();

  // Only the answer to the latest request is shown, so a slow early one cannot put
  // back a state that has since moved on.
  let asked = 0;
  const refresh = async (): Promise<Attachment[]> => {
    const mine = ++asked;
    const items = await Api.attachments(courseId).catch((e) => {
      toast(errorText(e));
      return null;
    });
    if (!items || mine !== asked) return items ?? [];
    summary.textContent = items.length ? `Attachments (${items.length})` : 'Attachments (slides, PDFs, code)';
    list.replaceChildren(...items.map(row));
    return items;
  };

  const row = (a: Attachment): HTMLElement => {
    const lecture = a.lecture_id ? lectures().find((l) => l.id === a.lecture_id) : null;
    const where = a.lecture_id ? (lecture?.title ?? 'a lecture') : 'Whole course';
    return h('li', { 'data-attachment': a.id, 'data-state': a.state },
      h('strong', {}, a.title),
      h('span', { class: 'meta' }, `${a.filename} · ${formatBytes(a.size)} · ${where}`),
      h('span', { class: `badge ${a.state}` }, STATE_LABEL[a.state] ?? a.state),
      a.state === 'uploading' ? (bars.get(a.id) ?? null) : null,
      h('span', { class: 'spacer' }),
      h('button', { type: 'button', class: 'danger', 'aria-label': `Delete attachment ${a.title}`, onclick: () => remove(a) }, 'Delete'),
      a.state === 'refused' ? h('p', { class: 'error' }, a.reason ?? 'The file was refused.') : null,
    );
  };

  const remove = async (a: Attachment) => {
    if (!confirm(`Delete the attachment “${a.title}”?`)) return;
    uploads.get(a.id)?.pause(); // stop sending its bytes
    await Api.deleteAttachment(a.id).catch((e) => toast(errorText(e)));
    void refresh();
  };

  /** The server reads a file's kind once all of it has arrived, within a second or
   * so: look (up to `looks` times) until it has. The attachment as last seen. */
  const settle = async (id: string, looks: number): Promise<Attachment | undefined> => {
    let a: Attachment | undefined;
    for (let i = 0; i < looks && list.isConnected; i++) {
      if (i) await new Promise((r) => window.setTimeout(r, 500));
      a = (await refresh()).find((x) => x.id === id);
      if (a?.state === 'ready') toast(`Attachment ready: ${a.title}`);
      if (a?.state === 'refused') toast(`Attachment refused: ${a.title}`);
      if (a?.state !== 'uploading') break;
    }
    uploads.delete(id);
    bars.delete(id);
    return a;
  };

  const error = h('p', { class: 'error', role: 'alert' });
  const send = (a: Attachment, file: File) => {
    const bar = h('progress', { max: 100, value: 0, 'aria-label': `Upload of ${a.title}` });
    bars.set(a.id, bar);
    const up = new FileUpload({ attachment_id: a.id }, file, (s) => {
      bar.value = s.total ? Math.floor((s.sent / s.total) * 100) : 0;
      if (s.status === 'done') void settle(a.id, 30);
      // A refused file is answered with an error to its last bytes, and the list then
      // says why; any other failure leaves it uploading.
      if (s.status === 'error') {
        void settle(a.id, 1).then((now) => {
          if (now?.state === 'uploading') error.textContent = `Upload of ${a.title} failed: ${s.error}`;
        });
      }
    });
    uploads.set(a.id, up);
    void refresh();
    up.start().catch((e) => (error.textContent = errorText(e)));
  };

  const file = h('input', { id: 'attachment-file', type: 'file', required: true });
  const title = h('input', { id: 'attachment-title', type: 'text', maxlength: 200, placeholder: 'Optional: the file’s name' });
  const target = h('select', { id: 'attachment-target' });
  const fillTargets = () => {
    const chosen = target.value;
    target.replaceChildren(h('option', { value: '' }, 'Whole course'), ...lectures().map((l) => h('option', { value: l.id }, l.title)));
    if (lectures().some((l) => l.id === chosen)) target.value = chosen;
  };
  // Lectures come and go while the studio is open: list them as they are when looked at.
  target.addEventListener('focus', fillTargets);
  const field = (input: HTMLElement, label: string) => h('div', { class: 'field' }, h('label', { for: input.id }, label), input);
  const form = h('form', { class: 'attachment-form' },
    field(file, 'Attachment file'), field(title, 'Attachment title'), field(target, 'Attached to'),
    h('button', { type: 'submit' }, 'Add attachment'),
    error,
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const chosen = file.files?.[0];
    if (!chosen) return;
    error.textContent = '';
    try {
      const made = await Api.createAttachment(courseId, {
        title: title.value.trim() || chosen.name,
        filename: chosen.name,
        size: chosen.size,
        ...(target.value ? { lecture_id: target.value } : {}),
      });
      form.reset();
      send(made, chosen);
    } catch (err) {
      error.textContent = errorText(err); // e.g. too large, said before any byte is sent
    }
  });

  const panel = h('details', { class: 'attachments-panel' }, summary, form, list);
  panel.addEventListener('toggle', fillTargets);
  fillTargets();
  void refresh();
  return panel;
}

/** The ready attachments of a course (`lectureId` null: the course-wide ones) or of
 * one of its lectures, each with a download button. Hidden while there are none, and
 * for a viewer who may not have them (not enrolled: 403). */
export function materialsSection(courseId: string, lectureId: string | null): HTMLElement {
  const headingId = `materials-${lectureId ?? courseId}`;
  const list = h('ul', {});
  const section = h('section', { class: 'materials', 'aria-labelledby': headingId, hidden: true },
    h('h2', { id: headingId }, lectureId ? 'Lecture materials' : 'Course materials'),
    list,
  );
  Api.attachments(courseId).then(
    (all) => {
      const shown = all.filter((a) => a.state === 'ready' && (a.lecture_id ?? null) === lectureId);
      list.replaceChildren(...shown.map(downloadItem));
      section.hidden = !shown.length;
    },
    (e) => {
      if (e instanceof ApiError && e.status === 403) return;
      list.replaceChildren(h('li', { class: 'error' }, `The materials could not be loaded: ${errorText(e)}`));
      section.hidden = false;
    },
  );
  return section;
}

function downloadItem(a: Attachment): HTMLElement {
  const button = h('button', { type: 'button', onclick: async () => {
    button.disabled = true;
    try {
      // A fresh link each time: they expire within about a minute.
      download((await Api.attachmentLink(a.id)).url, a.filename);
    } catch (e) {
      toast(errorText(e));
    } finally {
      button.disabled = false;
    }
  } }, `Download ${a.title}`);
  return h('li', {}, button, h('span', { class: 'meta' }, `${fileKind(a.filename, a.content_type)} · ${formatBytes(a.size)}`));
}

/** Follows a download link. The file is answered as an attachment, so the browser
 * saves it and the page stays; `download` names it where the link is this site's. */
function download(url: string, filename: string): void {
  const a = h('a', { href: url, download: filename, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
}
