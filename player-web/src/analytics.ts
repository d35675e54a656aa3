// Viewing analytics in the studio: a course's totals (views, unique viewers, watch time,
// completion), views per day, a table of its lectures, and, for the lecture chosen, its
// audience-retention curve and quality of experience; the course's figures download
// as CSV. Read from the players' beacons (see beacons.ts).
import { Api, api, authHeaders } from './api';
import { errorText, h, toast } from './dom';
import { barChart, fillDays, percent, retentionSummary, shareLineChart } from './charts';

export interface DayCount { day: string; views: number; viewers: number; watch_secs: number }
export interface Qoe {
  startup_p50_ms: number | null; startup_p95_ms: number | null; rebuffer_ratio: number; rebuffers_per_view: number;
  errors_by_browser: { browser: string; views: number; errors: number }[];
}
interface Totals { views: number; unique_viewers: number; watch_secs: number; completion_rate: number }
export interface LectureReport extends Totals {
  lecture_id: string; title: string; duration_secs: number | null; retention: number[]; per_day: DayCount[]; qoe: Qoe;
}
export interface LectureLine extends Totals { lecture_id: string; title: string; startup_p50_ms: number | null; rebuffer_ratio: number }
export interface CourseReport extends Totals { course_id: string; per_day: DayCount[]; qoe: Qoe; lectures: LectureLine[] }

const enc = encodeURIComponent;
export const AnalyticsApi = {
  course: (id: string) => api<CourseReport>('GET', `/api/courses/${enc(id)}/analytics`),
  lecture: (id: string) => api<LectureReport>('GET', `/api/lectures/${enc(id)}/analytics`),
  /** The CSV (it needs the Authorization header, so it is fetched, not linked). */
  async csv(id: string): Promise<{ blob: Blob; filename: string }> {
    const res = await fetch(`/api/courses/${enc(id)}/analytics.csv`, { headers: authHeaders() });
    if (!res.ok) throw new Error(`The CSV could not be made (${res.status}).`);
    const named = /filename="?([^";]+)"?/.exec(res.headers.get('Content-Disposition') ?? '')?.[1];
    return { blob: await res.blob(), filename: named ?? `course-${id}-analytics.csv` };
  },
};

/** Seconds watched, as a person reads them: "42 s", "12 min 5 s", "3 h 20 min". */
export function formatWatchTime(secs: number): string {
  if (!Number.isFinite(secs) || secs < 0) return '–';
  const s = Math.round(secs);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min${s % 60 ? ` ${s % 60} s` : ''}`;
  const m = Math.floor((s % 3600) / 60);
  return `${Math.floor(s / 3600)} h${m ? ` ${m} min` : ''}`;
}

const ms = (v: number | null) => (v == null ? '–' : v < 1000 ? `${v} ms` : `${(v / 1000).toFixed(1)} s`);
const ratio = (r: number) => (r > 0 && r < 0.001 ? '<0.1%' : `${(r * 100).toFixed(1)}%`);

function tiles(t: Totals): HTMLElement {
  const tile = (name: string, key: string, value: string, raw: number) =>
    h('div', { class: 'stat', 'data-stat': key, 'data-value': raw }, h('dt', {}, name), h('dd', {}, value));
  return h('dl', { class: 'stats' },
    tile('Views', 'views', String(t.views), t.views),
    tile('Unique viewers', 'unique_viewers', String(t.unique_viewers), t.unique_viewers),
    tile('Watch time', 'watch_secs', formatWatchTime(t.watch_secs), t.watch_secs),
    tile('Completion', 'completion_rate', percent(t.completion_rate), t.completion_rate),
  );
}

function viewsPerDay(days: DayCount[], of: string): HTMLElement {
  const filled = fillDays(days.map((d) => ({ day: d.day, value: d.views })));
  if (!filled.length) return h('p', { class: 'meta' }, 'No views yet.');
  const total = filled.reduce((n, d) => n + d.value, 0);
  const top = filled.reduce((a, b) => (b.value > a.value ? b : a));
  const label = `Views per day of ${of}, ${filled[0].day} to ${filled[filled.length - 1].day}: ${total} view${total === 1 ? '' : 's'}, most (${top.value}) on ${top.day}`;
  return h('figure', { class: 'chart-figure' }, barChart(filled, label), h('figcaption', { class: 'meta' }, 'Views per day (UTC)'));
}

function qoeList(q: Qoe): HTMLElement {
  return h('dl', { class: 'stats qoe' },
    h('div', { class: 'stat', 'data-stat': 'startup_p50_ms' }, h('dt', {}, 'Startup (median)'), h('dd', {}, ms(q.startup_p50_ms))),
    h('div', { class: 'stat', 'data-stat': 'startup_p95_ms' }, h('dt', {}, 'Startup (95th percentile)'), h('dd', {}, ms(q.startup_p95_ms))),
    h('div', { class: 'stat', 'data-stat': 'rebuffer_ratio' }, h('dt', {}, 'Rebuffering'), h('dd', {}, ratio(q.rebuffer_ratio))),
    h('div', { class: 'stat', 'data-stat': 'rebuffers_per_view' }, h('dt', {}, 'Stalls per view'), h('dd', {}, q.rebuffers_per_view.toFixed(2))),
  );
}

function browsersTable(q: Qoe, of: string): HTMLElement {
  if (!q.errors_by_browser.length) return h('p', { class: 'meta' }, 'No views yet, so no errors by browser.');
  return h('div', { class: 'table-scroll' }, h('table', { class: 'analytics-table' },
    h('caption', { class: 'meta' }, `Errors by browser, ${of}`),
    h('thead', {}, h('tr', {}, ...['Browser', 'Views', 'Errors', 'Errors per view'].map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, ...q.errors_by_browser.map((b) => h('tr', {},
      h('th', { scope: 'row' }, b.browser),
      h('td', { class: 'num' }, b.views),
      h('td', { class: 'num' }, b.errors),
      h('td', { class: 'num' }, b.views ? (b.errors / b.views).toFixed(2) : '–'),
    ))),
  ));
}

/** One lecture's retention curve and quality of experience. */
async function lectureDetail(slot: HTMLElement, line: LectureLine) {
  slot.replaceChildren(h('p', { class: 'meta' }, `Loading “${line.title}”…`));
  try {
    const r = await AnalyticsApi.lecture(line.lecture_id);
    const summary = retentionSummary(r.views ? r.retention : []);
    slot.replaceChildren(
      h('h3', {}, r.title),
      tiles(r),
      h('h4', {}, 'Audience retention'),
      r.views
        ? h('figure', { class: 'chart-figure' }, shareLineChart(r.retention, `${summary} (${r.title})`),
            h('figcaption', { class: 'meta' }, 'Share of views still watching at each point of the lecture.'))
        : h('p', { class: 'meta' }, 'No views yet.'),
      h('h4', {}, 'Quality of experience'),
      qoeList(r.qoe),
      browsersTable(r.qoe, r.title),
      h('h4', {}, 'Views per day'),
      viewsPerDay(r.per_day, r.title),
    );
    slot.dataset.lecture = r.lecture_id;
  } catch (e) {
    slot.replaceChildren(h('p', { class: 'error' }, errorText(e)));
  }
}

/** The analytics of a course, for its owner. */
export function analyticsView(courseId: string): HTMLElement {
  const heading = h('h1', {}, 'Analytics');
  const body = h('div', { class: 'analytics-body', 'aria-live': 'polite' }, h('p', { class: 'meta' }, 'Loading…'));
  const download = async () => {
    try {
      const { blob, filename } = await AnalyticsApi.csv(courseId);
      const url = URL.createObjectURL(blob);
      const a = h('a', { href: url, download: filename, hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      window.setTimeout(() => URL.revokeObjectURL(url), 10_000);
    } catch (e) {
      toast(errorText(e));
    }
  };
  let chosen: string | null = null;
  let asked = 0;
  const load = async () => {
    const mine = ++asked;
    try {
      const [course, report] = await Promise.all([Api.course(courseId), AnalyticsApi.course(courseId)]);
      if (mine !== asked) return;
      heading.textContent = `Analytics: ${course.title}`;
      document.title = `Analytics: ${course.title} · Lectern`;
      const detail = h('section', { class: 'card lecture-analytics', 'aria-label': 'Lecture analytics' });
      const choose = (line: LectureLine) => {
        chosen = line.lecture_id;
        for (const b of table.querySelectorAll<HTMLButtonElement>('button[data-lecture]')) b.setAttribute('aria-pressed', String(b.dataset.lecture === chosen));
        void lectureDetail(detail, line);
      };
      const table = h('table', { class: 'analytics-table lectures-analytics' },
        h('caption', { class: 'meta' }, 'Lectures (choose one for its retention curve and quality of experience)'),
        h('thead', {}, h('tr', {}, ...['Lecture', 'Views', 'Viewers', 'Watch time', 'Completion', 'Startup (median)', 'Rebuffering'].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, ...report.lectures.map((l) => h('tr', { 'data-lecture': l.lecture_id },
          h('th', { scope: 'row' }, h('button', { type: 'button', class: 'link', 'data-lecture': l.lecture_id, 'aria-pressed': 'false', 'aria-label': `Show analytics of ${l.title}`, onclick: () => choose(l) }, l.title)),
          h('td', { class: 'num' }, l.views),
          h('td', { class: 'num' }, l.unique_viewers),
          h('td', { class: 'num', 'data-watch-secs': l.watch_secs }, formatWatchTime(l.watch_secs)),
          h('td', { class: 'num' }, percent(l.completion_rate)),
          h('td', { class: 'num' }, ms(l.startup_p50_ms)),
          h('td', { class: 'num' }, ratio(l.rebuffer_ratio)),
        ))),
      );
      body.replaceChildren(
        h('section', { class: 'card', 'aria-label': 'Course totals' }, tiles(report), viewsPerDay(report.per_day, course.title), h('h3', {}, 'Quality of experience'), qoeList(report.qoe), browsersTable(report.qoe, course.title)),
        h('h2', {}, 'Lectures'),
        report.lectures.length ? h('div', { class: 'table-scroll' }, table) : h('p', { class: 'meta' }, 'This course has no lectures yet.'),
        ...(report.lectures.length ? [detail] : []),
      );
      const first = report.lectures.find((l) => l.lecture_id === chosen) ?? report.lectures.find((l) => l.views > 0) ?? report.lectures[0];
      if (first) choose(first);
    } catch (e) {
      if (mine === asked) body.replaceChildren(h('p', { class: 'error' }, errorText(e)));
    }
  };
  void load();
  return h('section', { class: 'analytics' },
    heading,
    h('div', { class: 'row' },
      h('button', { type: 'button', onclick: () => void load() }, 'Refresh'),
      h('button', { type: 'button', onclick: () => void download() }, 'Download CSV'),
    ),
    body,
  );
}
