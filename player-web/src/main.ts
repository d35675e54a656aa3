// Lectern in the browser: a hash router over a handful of pages that talk only to the
// public API.
import './style.css';
import { Api, ApiError, liveEvents, session, setSession, type CourseDetail, type Lecture } from './api';
import { errorText, h, statusBadge, toast } from './dom';
import { formatBytes, formatDuration, formatEta, formatPrice, resumePosition } from './format';
import { attachmentsPanel, materialsSection } from './attachments';
import { captionsEditor } from './captions';
import { chapterList, chaptersEditor } from './chapters';
import { slidesPanel, type SlidesPanel } from './slides';
import { codesPanel, enrollBox } from './codes';
import { lectureHits } from './search';
import { createPlayer, type Player } from './player';
import { FileUpload, type UploadState } from './upload';
import { webhooksView } from './webhooks';
import { analyticsView } from './analytics';
import { accountPage, forgotLink } from './account';

const main = document.getElementById('main')!;
const nav = document.getElementById('nav')!;
let cleanup: (() => void)[] = [];

/** The languages a course may be taught in (the server's list), by name. */
const COURSE_LANGUAGES: [string, string][] = [
  ['ar', 'Arabic'], ['cs', 'Czech'], ['da', 'Danish'], ['de', 'German'], ['el', 'Greek'], ['en', 'English'],
  ['es', 'Spanish'], ['fi', 'Finnish'], ['fr', 'French'], ['he', 'Hebrew'], ['hi', 'Hindi'], ['hu', 'Hungarian'],
  ['id', 'Indonesian'], ['it', 'Italian'], ['ja', 'Japanese'], ['ko', 'Korean'], ['nl', 'Dutch'], ['no', 'Norwegian'],
  ['pl', 'Polish'], ['pt', 'Portuguese'], ['ro', 'Romanian'], ['ru', 'Russian'], ['sv', 'Swedish'], ['tr', 'Turkish'],
  ['uk', 'Ukrainian'], ['vi', 'Vietnamese'], ['zh', 'Chinese'],
];
function onLeave(fn: () => void) {
  cleanup.push(fn);
}

// Bumped on every navigation: a page whose data arrives after the viewer went on must
// not replace (or start a player behind) the page they went to.
let generation = 0;
function staleness(): () => boolean {
  const mine = generation;
  return () => mine !== generation;
}

function renderNav() {
  const s = session();
  nav.replaceChildren(
    ...[
    h('a', { href: '#/' }, 'Catalog'),
    s ? h('a', { href: '#/me' }, 'My courses') : null,
    s && s.user.role !== 'student' ? h('a', { href: '#/studio' }, 'Studio') : null,
    s
      ? h('button', { type: 'button', class: 'link', onclick: () => { setSession(null); location.hash = '#/login'; } }, `Sign out (${s.user.name})`)
      : h('a', { href: '#/login' }, 'Sign in'),
    ].filter((n): n is NonNullable<typeof n> => !!n),
  );
}

function page(title: string, ...children: (Node | null | false)[]) {
  document.title = `${title} · Lectern`;
  main.replaceChildren(...children.filter((c): c is Node => !!c));
  main.focus({ preventScroll: true });
}

function requireSession(): boolean {
  if (session()) return true;
  sessionStorage.setItem('lectern.after-login', location.hash);
  location.hash = '#/login';
  return false;
}

// --- sign in / up ------------------------------------------------------------------

function authPage(mode: 'login' | 'signup') {
  const email = h('input', { id: 'email', type: 'email', required: true, autocomplete: 'email' });
  const password = h('input', { id: 'password', type: 'password', required: true, minlength: 8, autocomplete: mode === 'login' ? 'current-password' : 'new-password' });
  const name = h('input', { id: 'name', required: true, autocomplete: 'name' });
  const role = h('select', { id: 'role' }, h('option', { value: 'student' }, 'Student'), h('option', { value: 'owner' }, 'Teacher (course owner)'));
  // Where teachers sign up by invitation, the code the school's admin gave them.
  const invite = h('input', { id: 'invite', autocomplete: 'off', maxlength: 64 });
  const inviteField = h('div', { hidden: true }, h('label', { for: 'invite' }, 'Invite code (if your school gave you one)'), invite);
  role.addEventListener('change', () => { inviteField.hidden = role.value !== 'owner'; });
  const error = h('p', { class: 'error', role: 'alert' });
  const form = h(
    'form',
    { class: 'card narrow', novalidate: false },
    h('h1', {}, mode === 'login' ? 'Sign in' : 'Create an account'),
    mode === 'signup' ? [h('label', { for: 'name' }, 'Name'), name] : null,
    h('label', { for: 'email' }, 'Email'),
    email,
    h('label', { for: 'password' }, 'Password'),
    password,
    mode === 'signup' ? [h('label', { for: 'role' }, 'I am a'), role, inviteField] : null,
    error,
    h('button', { type: 'submit', class: 'primary' }, mode === 'login' ? 'Sign in' : 'Sign up'),
    h('p', {}, mode === 'login' ? h('a', { href: '#/signup' }, 'New here? Create an account') : h('a', { href: '#/login' }, 'Already have an account? Sign in')),
    mode === 'login' ? forgotLink() : null,
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.textContent = '';
    try {
      const s = mode === 'login' ? await Api.login(email.value, password.value) : await Api.signup(email.value, password.value, name.value, role.value, invite.value.trim());
      setSession(s);
      renderNav();
      if (s.owner_request_pending) {
        page('Request sent', h('div', { class: 'card narrow' },
          h('h1', {}, 'Request sent'),
          h('p', {}, 'An administrator will approve your account as a teacher. Until then you can watch courses as a student.'),
          h('a', { href: '#/' }, 'Browse courses')));
        return;
      }
      const next = sessionStorage.getItem('lectern.after-login');
      sessionStorage.removeItem('lectern.after-login');
      location.hash = next || (s.user.role === 'student' ? '#/' : '#/studio');
    } catch (err) {
      error.textContent = errorText(err);
    }
  });
  page(mode === 'login' ? 'Sign in' : 'Sign up', form);
  email.focus();
}

// --- catalog -----------------------------------------------------------------------

function courseCard(c: { id: string; title: string; category: string; price_cents: number; lecture_count: number; poster_url: string | null; published?: boolean }, href: string) {
  return h(
    'a',
    { class: 'course-card', href },
    c.poster_url ? h('img', { src: c.poster_url, alt: '', loading: 'lazy' }) : h('div', { class: 'poster-placeholder', 'aria-hidden': 'true' }, c.title.slice(0, 1)),
    h('div', { class: 'card-body' },
      h('h3', {}, c.title),
      h('p', { class: 'meta' }, [c.category || 'General', `${c.lecture_count} lecture${c.lecture_count === 1 ? '' : 's'}`].join(' · ')),
      h('p', { class: 'price' }, formatPrice(c.price_cents)),
      c.published === false ? h('span', { class: 'badge draft' }, 'Draft') : null,
    ),
  );
}

async function catalogPage(params: URLSearchParams) {
  if (!requireSession()) return;
  const q = params.get('q') ?? '';
  const category = params.get('category') ?? '';
  const pageNo = Math.max(1, Number(params.get('page') ?? 1));
  const search = h('input', { id: 'q', type: 'search', value: q, placeholder: 'Search courses', 'aria-label': 'Search courses' });
  const cat = h('input', { id: 'category', value: category, placeholder: 'Category', 'aria-label': 'Category' });
  const form = h('form', { class: 'search', role: 'search' }, search, cat, h('button', { type: 'submit' }, 'Search'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const p = new URLSearchParams();
    if (search.value.trim()) p.set('q', search.value.trim());
    if (cat.value.trim()) p.set('category', cat.value.trim());
    location.hash = `#/?${p}`;
  });
  const grid = h('div', { class: 'grid', 'aria-live': 'polite' }, h('p', {}, 'Loading…'));
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages' });
  page('Catalog', h('h1', {}, 'Courses'), form, grid, pager, q ? lectureHits(q) : null);
  try {
    const res = await Api.courses({ q, category, page: pageNo });
    grid.replaceChildren(...(res.items.length ? res.items.map((c) => courseCard(c, `#/courses/${c.id}`)) : [h('p', {}, q ? `No course matches “${q}”.` : 'No courses yet.')]));
    const pages = Math.max(1, Math.ceil(res.total / res.per_page));
    const link = (n: number, label: string) => {
      const p = new URLSearchParams(params);
      p.set('page', String(n));
      return h('a', { href: `#/?${p}`, 'aria-current': n === pageNo ? 'page' : null }, label);
    };
    pager.replaceChildren(
      ...[
        pageNo > 1 ? link(pageNo - 1, '← Previous') : null,
        h('span', {}, `Page ${pageNo} of ${pages} · ${res.total} course${res.total === 1 ? '' : 's'}`),
        pageNo < pages ? link(pageNo + 1, 'Next →') : null,
      ].filter((n): n is NonNullable<typeof n> => !!n),
    );
  } catch (e) {
    grid.replaceChildren(h('p', { class: 'error' }, errorText(e)));
  }
}

async function myCoursesPage() {
  if (!requireSession()) return;
  const grid = h('div', { class: 'grid' });
  page('My courses', h('h1', {}, 'My courses'), grid);
  const res = await Api.myCourses();
  grid.replaceChildren(...(res.items.length ? res.items.map((c) => courseCard(c, `#/courses/${c.id}`)) : [h('p', {}, 'You have not enrolled in a course yet. ', h('a', { href: '#/' }, 'Browse the catalog'))]));
}

// --- course page -------------------------------------------------------------------

/** The course, or null after showing why it cannot be loaded. */
async function loadCourse(id: string): Promise<CourseDetail | null> {
  try {
    return await Api.course(id);
  } catch (e) {
    page('Not found', h('p', { class: 'error' }, errorText(e)));
    return null;
  }
}

/** `paidChecks`: back from the payment provider, how often enrollment was looked for
 * (it follows the provider's event, usually within seconds). */
async function coursePage(id: string, paidChecks: number | null = null) {
  if (!requireSession()) return;
  const stale = staleness();
  const course = await loadCourse(id);
  if (!course || stale()) return;
  if (paidChecks !== null && !course.enrolled && paidChecks < 40) {
    page(course.title, h('div', { class: 'card notice', role: 'status' }, h('p', {}, 'Payment received. You are enrolled as soon as it is confirmed…')));
    const timer = window.setTimeout(() => coursePage(id, paidChecks + 1), 1500);
    onLeave(() => window.clearTimeout(timer));
    return;
  }
  const mayWatch = course.enrolled || course.can_edit;
  const last = course.progress[0];
  const lastLecture = last && course.lectures.find((l) => l.id === last.lecture_id);
  const firstReady = course.lectures.find((l) => l.playable);
  const progressOf = new Map(course.progress.map((p) => [p.lecture_id, p]));
  const cta = mayWatch
    ? lastLecture
      ? h('a', { class: 'button primary', href: `#/watch/${lastLecture.id}` }, `Continue “${lastLecture.title}” at ${formatDuration(last.position_secs)}`)
      : firstReady
        ? h('a', { class: 'button primary', href: `#/watch/${firstReady.id}` }, 'Start the course')
        : null
    : enrollBox(course, () => coursePage(id));
  const courseSearch = h('input', { type: 'search', placeholder: 'Search this course’s lectures', 'aria-label': 'Search this course' });
  const found = h('div', {});
  const searchForm = h('form', { class: 'search', role: 'search' }, courseSearch, h('button', { type: 'submit' }, 'Search'));
  searchForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const q = courseSearch.value.trim();
    found.replaceChildren(...(q ? [lectureHits(q, course.id)] : []));
  });
  page(
    course.title,
    h('article', { class: 'course' },
      h('h1', {}, course.title),
      h('p', { class: 'meta' }, [course.category || 'General', formatPrice(course.price_cents), `${course.lectures.length} lectures`].join(' · ')),
      h('p', { class: 'description' }, course.description),
      cta,
      course.can_edit ? h('a', { class: 'button', href: `#/studio/courses/${course.id}` }, 'Edit in studio') : null,
      h('h2', {}, 'Lectures'),
      searchForm,
      found,
      h('ol', { class: 'lectures' },
        ...course.lectures.map((l) => {
          const p = progressOf.get(l.id);
          return h('li', {},
            l.playable && mayWatch ? h('a', { href: `#/watch/${l.id}` }, l.title) : h('span', {}, l.title),
            h('span', { class: 'meta' }, formatDuration(l.duration_secs)),
            l.status !== 'ready' ? statusBadge(l.status, l.progress_percent) : null,
            p?.completed ? h('span', { class: 'badge ready' }, 'Watched') : p ? h('span', { class: 'meta' }, `at ${formatDuration(p.position_secs)}`) : null,
          );
        }),
      ),
      mayWatch ? materialsSection(course.id, null) : null,
    ),
  );
}

// --- watch page ----------------------------------------------------------------------

/** `at`: where to start (a chapter link's `?t=`); else where the viewer left off. */
async function watchPage(lectureId: string, at: number | null = null) {
  if (!requireSession()) return;
  const stale = staleness();
  let lecture: Lecture;
  let course: CourseDetail;
  try {
    lecture = await Api.lecture(lectureId);
    course = await Api.course(lecture.course_id);
  } catch (e) {
    if (!stale()) page('Not found', h('p', { class: 'error' }, errorText(e)));
    return;
  }
  if (stale()) return;
  const index = course.lectures.findIndex((l) => l.id === lecture.id);
  const next = course.lectures.slice(index + 1).find((l) => l.playable);
  const header = h('div', { class: 'watch-head' },
    h('a', { href: `#/courses/${course.id}` }, `← ${course.title}`),
    h('h1', {}, lecture.title),
  );
  if (!course.enrolled && !course.can_edit) {
    page(lecture.title, header,
      h('div', { class: 'card notice', role: 'alert' },
        h('h2', {}, 'Enroll to watch'),
        h('p', {}, `This lecture is part of “${course.title}”. Enroll in the course to watch it.`),
        enrollBox(course, () => watchPage(lectureId)),
      ));
    return;
  }
  if (!lecture.playable) {
    page(lecture.title, header, h('div', { class: 'card notice' }, h('p', {}, 'This lecture is not ready yet. '), statusBadge(lecture.status, lecture.progress_percent)));
    return;
  }
  let grant;
  let saved;
  let chapters;
  try {
    [grant, saved, chapters] = await Promise.all([Api.playback(lecture.id), Api.progress(lecture.id), Api.chapters(lecture.id)]);
  } catch (e) {
    if (!stale()) page(lecture.title, header, h('p', { class: 'error' }, errorText(e)));
    return;
  }
  if (stale()) return;
  let lastSaved = -1;
  let position = 0;
  const save = (keepalive = false) => {
    if (Math.abs(position - lastSaved) < 1) return;
    lastSaved = position;
    Api.saveProgress(lecture.id, position, keepalive).catch(() => {});
  };
  const player: Player = createPlayer(grant, {
    startAt: at ?? resumePosition(saved, lecture.duration_secs),
    renew: () => Api.playback(lecture.id),
    onTime: (t) => (position = t),
    onPause: () => save(),
    onEnded: () => {
      save();
      if (next) toast(`Up next: ${next.title}`);
    },
  });
  const timer = window.setInterval(() => save(), 5000);
  const leave = () => save(true);
  window.addEventListener('pagehide', leave);
  onLeave(() => {
    window.clearInterval(timer);
    window.removeEventListener('pagehide', leave);
    save(true);
    player.destroy();
  });
  (window as unknown as { lecternPlayer: Player }).lecternPlayer = player;
  player.setChapters(chapters, lecture.duration_secs ?? 0);
  page(lecture.title, header, player.element,
    h('div', { class: 'watch-foot' },
      h('span', { class: 'meta' }, formatDuration(lecture.duration_secs)),
      next ? h('a', { class: 'button', href: `#/watch/${next.id}` }, `Next: ${next.title} →`) : null,
    ),
    chapterList(lecture.id, chapters, (t) => player.seek(t)),
    materialsSection(course.id, lecture.id));
  player.element.focus();
}

// --- studio --------------------------------------------------------------------------

async function studioPage() {
  if (!requireSession()) return;
  const title = h('input', { id: 'new-title', required: true, placeholder: 'Course title' });
  const form = h('form', { class: 'inline' }, h('label', { for: 'new-title' }, 'New course'), title, h('button', { type: 'submit', class: 'primary' }, 'Create'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      const c = await Api.createCourse({ title: title.value });
      location.hash = `#/studio/courses/${c.id}`;
    } catch (err) {
      toast(errorText(err));
    }
  });
  const grid = h('div', { class: 'grid' });
  page('Studio', h('h1', {}, 'Studio'), form,
    h('p', {}, h('a', { class: 'button', href: '#/studio/webhooks' }, 'Webhooks')),
    h('h2', {}, 'Your courses'), grid);
  const res = await Api.courses({ mine: true });
  grid.replaceChildren(...(res.items.length ? res.items.map((c) => courseCard(c, `#/studio/courses/${c.id}`)) : [h('p', {}, 'Create your first course above.')]));
}

function studioAnalyticsPage(id: string) {
  if (!requireSession()) return;
  page('Analytics', h('a', { href: `#/studio/courses/${id}` }, '← Course'), analyticsView(id));
}

function studioWebhooksPage() {
  if (!requireSession()) return;
  page('Webhooks', h('a', { href: '#/studio' }, '← Studio'), h('h1', {}, 'Webhooks'), webhooksView());
}

const uploads = new Map<string, FileUpload>();

/** An upload's progress row. It is updated in place (not rebuilt) on every progress
 * event, so the Pause/Resume button keeps keyboard focus. */
function uploadView(state: UploadState, existing?: HTMLElement | null): HTMLElement {
  const el = existing ?? h('div', { class: 'upload' },
    h('progress', { max: 100, value: 0, 'aria-label': `Upload of ${state.file.name}` }),
    h('span', { class: 'pct' }),
    h('span', { class: 'meta' }),
    h('button', { type: 'button', class: 'pause' }),
  );
  const pct = state.total ? Math.floor((state.sent / state.total) * 100) : 0;
  el.dataset.status = state.status;
  (el.querySelector('progress') as HTMLProgressElement).value = pct;
  el.querySelector('.pct')!.textContent = `${pct}%`;
  el.querySelector('.meta')!.textContent =
    state.status === 'done'
      ? `Uploaded ${formatBytes(state.total)}`
      : state.status === 'error'
        ? `Upload failed: ${state.error}`
        : `${formatBytes(state.sent)} of ${formatBytes(state.total)}${state.rate ? ` · ${formatBytes(state.rate)}/s · ${formatEta(state.total - state.sent, state.rate)}` : ''}${state.status === 'paused' ? ' · paused' : ''}${state.resumedFrom ? ' · resumed' : ''}`;
  const btn = el.querySelector('button.pause') as HTMLButtonElement;
  const upload = uploads.get(state.id);
  btn.hidden = state.status === 'done' || state.status === 'error';
  btn.textContent = state.status === 'paused' ? 'Resume' : 'Pause';
  btn.onclick = () => (state.status === 'paused' ? upload?.resume() : upload?.pause());
  return el;
}

async function studioCoursePage(id: string) {
  if (!requireSession()) return;
  const stale = staleness();
  const loaded = await loadCourse(id);
  if (!loaded || stale()) return;
  let course: CourseDetail = loaded;
  const f = {
    title: h('input', { id: 'title', value: course.title, required: true }),
    description: h('textarea', { id: 'description', rows: 4 }, course.description),
    category: h('input', { id: 'category-edit', value: course.category }),
    language: h('select', { id: 'language' }, ...COURSE_LANGUAGES.map(([code, name]) =>
      h('option', { value: code, selected: code === course.language }, name))),
    price: h('input', { id: 'price', type: 'number', min: 0, step: 0.01, value: (course.price_cents / 100).toFixed(2) }),
    published: h('input', { id: 'published', type: 'checkbox', checked: course.published }),
  };
  const form = h('form', { class: 'card' },
    h('label', { for: 'title' }, 'Title'), f.title,
    h('label', { for: 'description' }, 'Description'), f.description,
    h('label', { for: 'category-edit' }, 'Category'), f.category,
    h('label', { for: 'language' }, 'Language (slides are read in it)'), f.language,
    h('label', { for: 'price' }, 'Price (USD, 0 for free)'), f.price,
    h('label', { class: 'check' }, f.published, ' Published (visible in the catalog)'),
    h('div', { class: 'row' },
      h('button', { type: 'submit', class: 'primary' }, 'Save'),
      h('button', { type: 'button', class: 'danger', onclick: async () => {
        if (!confirm(`Delete “${course.title}” and all its lectures? This cannot be undone.`)) return;
        await Api.deleteCourse(course.id);
        toast('Course deleted.');
        location.hash = '#/studio';
      } }, 'Delete course'),
      h('a', { class: 'button', href: `#/courses/${course.id}` }, 'View as student'),
      h('a', { class: 'button', href: `#/studio/courses/${course.id}/analytics` }, 'Analytics'),
    ),
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      course = { ...course, ...(await Api.updateCourse(course.id, {
        title: f.title.value,
        description: f.description.value,
        category: f.category.value,
        language: f.language.value,
        price_cents: Math.round(Number(f.price.value || 0) * 100),
        published: f.published.checked,
      })) };
      toast('Saved.');
    } catch (err) {
      toast(errorText(err));
    }
  });

  const list = h('ol', { class: 'studio-lectures' });
  const rows = new Map<string, HTMLElement>();
  const slidePanels = new Map<string, SlidesPanel>();
  const renderLectures = async () => {
    course = await Api.course(id);
    list.replaceChildren(...course.lectures.map((l, i) => lectureRow(l, i)));
  };
  const lectureRow = (l: Lecture, i: number): HTMLElement => {
    const upload = uploads.get(l.id);
    const file = h('input', { type: 'file', accept: 'video/*,audio/*', 'aria-label': `Upload a file for ${l.title}` });
    file.addEventListener('change', () => file.files?.[0] && startUpload(l.id, file.files[0]));
    const chapters = chaptersEditor(l);
    // Proposed chapters are the owner's alone (the server refuses anyone else too).
    const slides = course.can_edit ? slidesPanel(l, chapters.show) : null;
    if (slides) slidePanels.set(l.id, slides);
    else slidePanels.delete(l.id);
    const row = h('li', { class: 'lecture-row', 'data-lecture': l.id, 'data-status': l.status },
      h('div', { class: 'row' },
        h('strong', {}, l.title),
        statusBadge(l.status, l.progress_percent),
        l.status === 'processing' || l.status === 'playable' ? h('progress', { max: 100, value: l.progress_percent, 'aria-label': 'Transcoding progress' }) : null,
        h('span', { class: 'meta' }, formatDuration(l.duration_secs)),
        originalBadge(l),
        h('span', { class: 'spacer' }),
        (l.status === 'ready' || l.status === 'failed') && l.original_tier
          ? h('button', { type: 'button', 'aria-label': `Transcode ${l.title} again`, title: 'Encode the original again with the current settings', onclick: async () => {
              await Api.transcodeAgain(l.id).catch((e) => toast(errorText(e)));
              renderLectures();
            } }, 'Transcode again')
          : null,
        h('button', { type: 'button', 'aria-label': `Move ${l.title} up`, disabled: i === 0, onclick: () => move(i, -1) }, '↑'),
        h('button', { type: 'button', 'aria-label': `Move ${l.title} down`, disabled: i === course.lectures.length - 1, onclick: () => move(i, 1) }, '↓'),
        h('button', { type: 'button', 'aria-label': `Rename ${l.title}`, onclick: async () => {
          const title = prompt('Lecture title', l.title);
          if (title && title !== l.title) {
            await Api.updateLecture(l.id, { title }).catch((e) => toast(errorText(e)));
            renderLectures();
          }
        } }, 'Rename'),
        h('button', { type: 'button', class: 'danger', onclick: async () => {
          if (!confirm(`Delete “${l.title}”?`)) return;
          await Api.deleteLecture(l.id);
          renderLectures();
        } }, 'Delete'),
      ),
      l.status === 'failed' && l.failure_reason ? h('p', { class: 'error' }, l.failure_reason) : null,
      upload ? uploadView(upload.state) : null,
      l.status !== 'processing' && (!upload || upload.state.status === 'done' || upload.state.status === 'error')
        ? h('label', { class: 'file' }, l.status === 'awaiting_upload' ? 'Upload a video: ' : 'Replace the video: ', file)
        : null,
      l.playable ? previewBlock(l) : null,
      captionsEditor(l),
      chapters.element,
      slides?.element,
    );
    rows.set(l.id, row);
    return row;
  };
  const originalBadge = (l: Lecture) => {
    if (!l.original_tier || l.original_tier === 'hot') return null;
    const text = l.original_tier === 'cold' ? 'Original in cold storage' : 'Original moving to cold storage';
    return h('span', { class: 'badge cold', 'data-original': l.original_tier, title: 'Renditions stay hot; a new transcode brings the original back first.' }, text);
  };
  const previewBlock = (l: Lecture) => {
    const box = h('div', { class: 'preview' });
    Api.playback(l.id)
      .then((grant) => {
        const poster = grant.poster_url ? h('img', { src: grant.poster_url, alt: `Poster of ${l.title}`, class: 'poster' }) : null;
        const btn = h('button', { type: 'button', onclick: () => {
          const p = createPlayer(grant, { startAt: 0 });
          box.replaceChildren(p.element);
          onLeave(() => p.destroy());
        } }, 'Preview');
        box.replaceChildren(...(poster ? [poster, btn] : [btn]));
      })
      .catch(() => {});
    return box;
  };
  const move = async (i: number, delta: number) => {
    const a = course.lectures[i];
    const b = course.lectures[i + delta];
    if (!a || !b) return;
    // Positions may repeat; give the two their neighbour's slot explicitly.
    await Api.updateLecture(a.id, { position: b.position === a.position ? a.position + delta : b.position });
    await Api.updateLecture(b.id, { position: a.position });
    renderLectures();
  };
  const startUpload = (lectureId: string, fileObj: File) => {
    const up = new FileUpload({ lecture_id: lectureId }, fileObj, (state) => {
      const row = rows.get(lectureId);
      const old = row?.querySelector('.upload') as HTMLElement | null;
      const view = uploadView(state, old);
      if (!old) row?.append(view);
      if (state.status === 'done') {
        toast(`Uploaded ${state.file.name}; transcoding starts.`);
        window.setTimeout(renderLectures, 500);
      }
    });
    uploads.set(lectureId, up);
    up.start().catch((e) => toast(errorText(e)));
    renderLectures();
  };

  const newLecture = h('input', { id: 'lecture-title', placeholder: 'Lecture title', required: true });
  const addForm = h('form', { class: 'inline' }, h('label', { for: 'lecture-title' }, 'Add a lecture'), newLecture, h('button', { type: 'submit' }, 'Add'));
  addForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    await Api.createLecture(course.id, newLecture.value).catch((err) => toast(errorText(err)));
    newLecture.value = '';
    renderLectures();
  });
  const many = h('input', { id: 'many', type: 'file', multiple: true, accept: 'video/*,audio/*' });
  many.addEventListener('change', async () => {
    for (const file of Array.from(many.files ?? [])) {
      const title = file.name.replace(/\.[^.]+$/, '').replace(/[_-]+/g, ' ');
      const l = await Api.createLecture(course.id, title);
      await renderLectures();
      startUpload(l.id, file);
    }
    many.value = '';
  });

  page(`Studio: ${course.title}`,
    h('a', { href: '#/studio' }, '← Studio'),
    h('h1', {}, course.title),
    form,
    codesPanel(course.id),
    attachmentsPanel(course.id, () => course.lectures),
    h('h2', {}, 'Lectures'),
    addForm,
    h('p', {}, h('label', { for: 'many' }, 'Or add lectures from several files at once: '), many),
    list,
  );
  await renderLectures();
  const stop = liveEvents((ev) => {
    // Events were missed that are no longer kept: show the state as it is now.
    if (ev.type === 'resync') return void renderLectures();
    const lid = ev.lecture_id as string | undefined;
    if (!lid || !course.lectures.some((l) => l.id === lid)) return;
    // Slides found after the lecture became ready: only its proposed chapters change
    // (the whole row is drawn again if it has no panel yet).
    if (ev.type === 'slides_found') {
      const panel = slidePanels.get(lid);
      return void (panel ? panel.refresh() : renderLectures());
    }
    if (ev.type === 'progress') {
      const row = rows.get(lid);
      const bar = row?.querySelector('progress[aria-label="Transcoding progress"]') as HTMLProgressElement | null;
      const badge = row?.querySelector('.badge');
      if (bar) bar.value = Number(ev.percent);
      if (badge) badge.replaceWith(statusBadge(row?.dataset.status ?? 'processing', Number(ev.percent)));
      if (!bar) renderLectures();
    } else {
      if (ev.type === 'ready') toast('A lecture is ready.');
      if (ev.type === 'failed') toast(`A lecture failed: ${ev.reason}`);
      renderLectures();
    }
  });
  onLeave(stop);
}

// --- router --------------------------------------------------------------------------

async function route() {
  generation++;
  for (const fn of cleanup.splice(0)) fn();
  renderNav();
  const [path, query] = location.hash.replace(/^#/, '').split('?');
  const params = new URLSearchParams(query ?? '');
  const parts = (path || '/').split('/').filter(Boolean);
  try {
    if (parts[0] === 'login') return authPage('login');
    if (parts[0] === 'signup') return authPage('signup');
    const account = accountPage(parts, params);
    if (account) { page(account.title, account.node); account.focus?.focus(); return; }
    if (parts[0] === 'me') return await myCoursesPage();
    if (parts[0] === 'courses' && parts[1]) return await coursePage(parts[1], params.has('paid') ? 0 : null);
    if (parts[0] === 'watch' && parts[1]) {
      const t = Number(params.get('t'));
      return await watchPage(parts[1], params.has('t') && Number.isFinite(t) && t >= 0 ? t : null);
    }
    if (parts[0] === 'studio' && parts[1] === 'courses' && parts[2] && parts[3] === 'analytics') return studioAnalyticsPage(parts[2]);
    if (parts[0] === 'studio' && parts[1] === 'courses' && parts[2]) return await studioCoursePage(parts[2]);
    if (parts[0] === 'studio' && parts[1] === 'webhooks') return studioWebhooksPage();
    if (parts[0] === 'studio') return await studioPage();
    return await catalogPage(params);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return;
    page('Error', h('p', { class: 'error' }, errorText(e)));
  }
}

window.addEventListener('hashchange', route);
liveEvents((ev) => {
  if (ev.type === 'lecture_ready') toast(`New lecture ready: ${ev.title}`);
});
route();
