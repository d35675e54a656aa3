// The public API, from the browser. The access token lives in localStorage and goes
// only into Authorization headers (and the WebSocket subprotocol), never into URLs.

export interface User { id: string; email: string; name: string; role: 'student' | 'owner' | 'admin' }
export interface Session { token: string; user: User; owner_request_pending?: boolean }
export interface Course {
  id: string; owner_id: string; title: string; description: string; category: string;
  price_cents: number; published: boolean; lecture_count: number; poster_url: string | null;
  /** ISO 639-1: the language slides are read in. */
  language: string;
  created_at: number; updated_at: number;
}
export interface Lecture {
  id: string; course_id: string; title: string; position: number;
  status: 'awaiting_upload' | 'processing' | 'playable' | 'ready' | 'failed';
  progress_percent: number; failure_reason: string | null; duration_secs: number | null;
  media_kind: 'video' | 'audio' | null; playable: boolean;
  /** Where the file the lecture was made from is kept; absent before one is accepted. */
  original_tier?: 'hot' | 'cooling' | 'cold';
}
export interface CaptionTrack { language: string; label: string; default: boolean; cue_count: number; updated_at: number }
export interface Chapter { start_secs: number; title: string }
/** A slide the lecture's slides job found: a proposed chapter, for the course's owner.
 * `thumbnail_url` answers only with the owner's Authorization header (`slideThumbnail`). */
export interface Slide { position: number; start_secs: number; title: string | null; text: string; thumbnail_url: string }
export interface SearchHit {
  kind: 'course' | 'lecture' | 'transcript' | 'screen'; course_id: string; course_title: string;
  lecture_id: string | null; lecture_title: string | null; start_secs: number | null; text: string;
}
export interface EnrollmentCode { code: string; max_uses: number | null; uses: number; expires_at: number | null; created_at: number }
export interface WatchProgress { lecture_id: string; position_secs: number; completed: boolean; updated_at: number }
export interface CourseDetail extends Course { lectures: Lecture[]; enrolled: boolean; can_edit: boolean; can_buy: boolean; progress: WatchProgress[] }
export interface Page<T> { items: T[]; page: number; per_page: number; total: number }
/** A file handed out with a course (lecture_id null) or one of its lectures. Its
 * kind is read from its bytes once they have all arrived: then ready, or refused with
 * the reason. */
export interface Attachment {
  id: string; course_id: string; lecture_id: string | null; title: string; filename: string;
  size: number; state: 'uploading' | 'ready' | 'refused'; content_type: string | null;
  reason: string | null; created_at: number;
}
/** What an owner's webhook endpoint may be sent. */
export type WebhookEventType =
  | 'upload.completed' | 'lecture.playable' | 'lecture.ready' | 'lecture.failed'
  | 'enrollment.created' | 'purchase.completed' | 'purchase.refunded';
/** An owner's webhook endpoint. Lectern disables it (with the reason) when a delivery
 * fails for good. */
export interface WebhookEndpoint {
  id: string; url: string; description: string; event_types: WebhookEventType[]; enabled: boolean;
  disabled_reason: string | null; previous_secret_until: number | null; created_at: number; updated_at: number;
}
/** An endpoint with its signing secret (`whsec_…`): answered when it is made or rotated, never again. */
export interface WebhookEndpointWithSecret extends WebhookEndpoint { secret: string }
/** One event's delivery to an endpoint; `last_response` is the start of the answer, as text. */
export interface WebhookDelivery {
  id: string; event_type: WebhookEventType; state: 'pending' | 'delivered' | 'failed'; attempts: number;
  next_attempt_at: number | null; last_status: number | null; last_latency_ms: number | null;
  last_response: string | null; last_error: string | null; created_at: number; finished_at: number | null;
  payload: unknown;
}
export interface PlaybackGrant {
  url: string; expires_at: number; media_kind: string | null; poster_url: string | null; storyboard_url: string | null;
  /** The credential of the player's viewing beacons (`POST /api/beacons`), valid 12 h. */
  beacon_token?: string;
}

export class ApiError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}

const KEY = 'lectern.session';

export function session(): Session | null {
  try {
    const raw = localStorage.getItem(KEY);
    return raw ? (JSON.parse(raw) as Session) : null;
  } catch {
    return null;
  }
}

export function setSession(s: Session | null): void {
  if (s) localStorage.setItem(KEY, JSON.stringify(s));
  else localStorage.removeItem(KEY);
}

export function authHeaders(): Record<string, string> {
  const s = session();
  return s ? { Authorization: `Bearer ${s.token}` } : {};
}

export async function api<T>(method: string, path: string, body?: unknown, init: RequestInit = {}): Promise<T> {
  const headers: Record<string, string> = { ...authHeaders() };
  // A file goes as it is (captions); anything else as JSON.
  const file = body instanceof Blob;
  if (body !== undefined) headers['Content-Type'] = file ? 'text/vtt' : 'application/json';
  const payload = body === undefined ? undefined : file ? body : JSON.stringify(body);
  const res = await fetch(path, { method, headers, body: payload, ...init });
  if (res.status === 401 && session()) {
    setSession(null);
    location.hash = '#/login';
  }
  const text = await res.text();
  const data = text ? JSON.parse(text) : null;
  if (!res.ok) {
    const err = data?.error ?? { code: 'http', message: res.statusText };
    throw new ApiError(res.status, err.code, err.message);
  }
  return data as T;
}

export const Api = {
  signup: (email: string, password: string, name: string, role: string, invite?: string) =>
    api<Session>('POST', '/api/auth/signup', { email, password, name, role, ...(invite ? { invite } : {}) }),
  login: (email: string, password: string) => api<Session>('POST', '/api/auth/login', { email, password }),
  courses: (q: { q?: string; category?: string; page?: number; mine?: boolean }) => {
    const p = new URLSearchParams();
    if (q.q) p.set('q', q.q);
    if (q.category) p.set('category', q.category);
    if (q.page) p.set('page', String(q.page));
    if (q.mine) p.set('mine', 'true');
    p.set('per_page', '12');
    return api<Page<Course>>('GET', `/api/courses?${p}`);
  },
  course: (id: string) => api<CourseDetail>('GET', `/api/courses/${encodeURIComponent(id)}`),
  createCourse: (c: Partial<Course>) => api<Course>('POST', '/api/courses', c),
  updateCourse: (id: string, c: Partial<Course>) => api<Course>('PATCH', `/api/courses/${encodeURIComponent(id)}`, c),
  deleteCourse: (id: string) => api<null>('DELETE', `/api/courses/${encodeURIComponent(id)}`),
  myCourses: () => api<{ items: Course[] }>('GET', '/api/me/courses'),
  enroll: (id: string, code?: string) => api<unknown>('POST', `/api/courses/${encodeURIComponent(id)}/enroll`, code ? { code } : {}),
  checkout: (id: string) => api<{ session_id: string; url: string }>('POST', `/api/courses/${encodeURIComponent(id)}/checkout`),
  codes: (id: string) => api<EnrollmentCode[]>('GET', `/api/courses/${encodeURIComponent(id)}/codes`),
  createCode: (id: string, c: { max_uses?: number; expires_in_days?: number }) => api<EnrollmentCode>('POST', `/api/courses/${encodeURIComponent(id)}/codes`, c),
  deleteCode: (id: string, code: string) => api<null>('DELETE', `/api/courses/${encodeURIComponent(id)}/codes/${encodeURIComponent(code)}`),
  /** Owners see every state; enrolled students only ready ones; others are refused (403). */
  attachments: (courseId: string) =>
    api<{ attachments: Attachment[] }>('GET', `/api/courses/${encodeURIComponent(courseId)}/attachments`).then((r) => r.attachments),
  /** The record, 'uploading'; its bytes follow by tus with the attachment's id. */
  createAttachment: (courseId: string, a: { title?: string; filename: string; size: number; lecture_id?: string }) =>
    api<Attachment>('POST', `/api/courses/${encodeURIComponent(courseId)}/attachments`, a),
  deleteAttachment: (id: string) => api<null>('DELETE', `/api/attachments/${encodeURIComponent(id)}`),
  /** A short-lived download URL; ask right before downloading, never keep one. */
  attachmentLink: (id: string) => api<{ url: string; expires_at: number }>('POST', `/api/attachments/${encodeURIComponent(id)}/link`),
  webhooks: () => api<{ endpoints: WebhookEndpoint[] }>('GET', '/api/webhooks').then((r) => r.endpoints),
  createWebhook: (w: { url: string; event_types: WebhookEventType[]; description: string }) =>
    api<WebhookEndpointWithSecret>('POST', '/api/webhooks', w),
  updateWebhook: (id: string, w: { url?: string; event_types?: WebhookEventType[]; description?: string; enabled?: boolean }) =>
    api<WebhookEndpoint>('PATCH', `/api/webhooks/${encodeURIComponent(id)}`, w),
  deleteWebhook: (id: string) => api<null>('DELETE', `/api/webhooks/${encodeURIComponent(id)}`),
  /** A new secret; the old one also signs for 24 h more. */
  rotateWebhook: (id: string) => api<WebhookEndpointWithSecret>('POST', `/api/webhooks/${encodeURIComponent(id)}/rotate`),
  /** The endpoint's latest deliveries, newest first. */
  webhookDeliveries: (id: string) =>
    api<{ deliveries: WebhookDelivery[] }>('GET', `/api/webhooks/${encodeURIComponent(id)}/deliveries`).then((r) => r.deliveries),
  resendDelivery: (id: string, delivery: string) =>
    api<WebhookDelivery>('POST', `/api/webhooks/${encodeURIComponent(id)}/deliveries/${encodeURIComponent(delivery)}/resend`),
  lecture: (id: string) => api<Lecture>('GET', `/api/lectures/${encodeURIComponent(id)}`),
  createLecture: (courseId: string, title: string) => api<Lecture>('POST', `/api/courses/${encodeURIComponent(courseId)}/lectures`, { title }),
  updateLecture: (id: string, l: { title?: string; position?: number }) => api<Lecture>('PATCH', `/api/lectures/${encodeURIComponent(id)}`, l),
  deleteLecture: (id: string) => api<null>('DELETE', `/api/lectures/${encodeURIComponent(id)}`),
  transcodeAgain: (id: string) => api<{ lecture_id: string; status: string }>('POST', '/api/transcodes', { lecture_id: id }),
  captions: (id: string) => api<CaptionTrack[]>('GET', `/api/lectures/${encodeURIComponent(id)}/captions`),
  putCaptions: (id: string, language: string, label: string, file: Blob, makeDefault: boolean) =>
    api<CaptionTrack>('PUT', `/api/lectures/${encodeURIComponent(id)}/captions/${encodeURIComponent(language)}?${new URLSearchParams({ label, default: String(makeDefault) })}`, file),
  patchCaptions: (id: string, language: string, patch: { label?: string; default?: boolean }) =>
    api<CaptionTrack>('PATCH', `/api/lectures/${encodeURIComponent(id)}/captions/${encodeURIComponent(language)}`, patch),
  deleteCaptions: (id: string, language: string) => api<null>('DELETE', `/api/lectures/${encodeURIComponent(id)}/captions/${encodeURIComponent(language)}`),
  search: (q: string, course?: string) =>
    api<Page<SearchHit>>('GET', `/api/search?${new URLSearchParams({ q, per_page: '20', ...(course ? { course } : {}) })}`),
  chapters: (id: string) => api<Chapter[]>('GET', `/api/lectures/${encodeURIComponent(id)}/chapters`),
  putChapters: (id: string, chapters: Chapter[] | Blob) =>
    api<Chapter[]>('PUT', `/api/lectures/${encodeURIComponent(id)}/chapters`, chapters instanceof Blob ? chapters : { chapters }),
  /** The owner's proposed chapters; empty until the slides job has run (403 for others). */
  slides: (id: string) => api<Slide[]>('GET', `/api/lectures/${encodeURIComponent(id)}/slides`),
  playback: (id: string) => api<PlaybackGrant>('POST', `/api/lectures/${encodeURIComponent(id)}/playback`),
  progress: (id: string) => api<{ position_secs: number; completed: boolean }>('GET', `/api/lectures/${encodeURIComponent(id)}/progress`),
  saveProgress: (id: string, position_secs: number, keepalive = false) =>
    api<WatchProgress>('PUT', `/api/lectures/${encodeURIComponent(id)}/progress`, { position_secs }, { keepalive }),
};

/** A slide's thumbnail (JPEG), fetched with the Authorization header an <img src>
 * cannot send; show it with `URL.createObjectURL`. Only an API path of this origin is
 * asked, so the token never goes elsewhere. */
export async function slideThumbnail(url: string, signal?: AbortSignal): Promise<Blob> {
  if (!url.startsWith('/api/')) throw new Error(`not a thumbnail of this server: ${url}`);
  const res = await fetch(url, { headers: authHeaders(), signal });
  if (!res.ok) throw new ApiError(res.status, 'http', res.statusText);
  return res.blob();
}

/** Live events (progress, ready, failed, slides_found; lecture_ready for students). Reconnects. */
export function liveEvents(onEvent: (e: Record<string, unknown>) => void): () => void {
  let ws: WebSocket | null = null;
  let closed = false;
  let delay = 1000;
  // The number of the last event heard: a reconnection first gets what came after it
  // (or a `resync` when that is no longer kept).
  let last = 0;
  const connect = () => {
    const s = session();
    if (!s || closed) return;
    const after = last > 0 ? `?after=${last}` : '';
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/api/events${after}`;
    ws = new WebSocket(url, ['bearer', s.token]);
    ws.onmessage = (m) => {
      delay = 1000;
      try {
        const ev = JSON.parse(m.data) as Record<string, unknown>;
        if (typeof ev.seq === 'number') last = Math.max(last, ev.seq);
        onEvent(ev);
      } catch {
        /* not ours */
      }
    };
    ws.onclose = () => {
      if (!closed) setTimeout(connect, (delay = Math.min(delay * 2, 15000)));
    };
  };
  connect();
  return () => {
    closed = true;
    ws?.close();
  };
}
