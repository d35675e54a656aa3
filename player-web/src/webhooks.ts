// Webhooks: the studio page where an owner registers endpoints for their events, is
// shown the secret that signs them (once, and again after a rotation), disables,
// enables and deletes them, and reads each one's delivery log, sending a delivery
// again when wanted. Everything an endpoint answered is shown as text, never as HTML.
import { Api, type WebhookDelivery, type WebhookEndpoint, type WebhookEventType } from './api';
import { errorText, h, toast } from './dom';

export const EVENT_TYPES: { type: WebhookEventType; hint: string }[] = [
  { type: 'upload.completed', hint: 'a lecture’s file arrived' },
  { type: 'lecture.playable', hint: 'a lecture can be watched while it is still encoding' },
  { type: 'lecture.ready', hint: 'a lecture is fully encoded' },
  { type: 'lecture.failed', hint: 'a lecture could not be encoded' },
  { type: 'enrollment.created', hint: 'a student enrolled' },
  { type: 'purchase.completed', hint: 'a course was bought' },
  { type: 'purchase.refunded', hint: 'a purchase was refunded or disputed' },
];

const STATE_LABEL: Record<WebhookDelivery['state'], string> = { pending: 'Pending', delivered: 'Delivered', failed: 'Failed' };

const when = (secs: number) => new Date(secs * 1000).toLocaleString();

/** The page's content: the form, the secret (after adding or rotating) and the endpoints. */
export function webhooksView(): HTMLElement {
  const secretSlot = h('div', { class: 'secret-slot' });
  const list = h('ul', { class: 'webhook-list', 'aria-label': 'Webhook endpoints' });
  // Endpoints whose log is open stay open when the list is drawn again.
  const open = new Set<string>();
  const showSecret = (url: string, secret: string) =>
    secretSlot.replaceChildren(secretNotice(url, secret, () => secretSlot.replaceChildren()));

  // Only the answer to the latest request is shown.
  let asked = 0;
  const refresh = async () => {
    const mine = ++asked;
    try {
      const endpoints = await Api.webhooks();
      if (mine !== asked) return;
      list.replaceChildren(...(endpoints.length
        ? endpoints.map((ep) => endpointRow(ep, actions, deliveriesLog(ep, open)))
        : [h('li', { class: 'meta' }, 'No endpoints yet.')]));
    } catch (e) {
      if (mine === asked) list.replaceChildren(h('li', { class: 'error' }, errorText(e)));
    }
  };

  const actions: EndpointActions = {
    rotate: async (ep) => {
      if (!confirm(`Make a new secret for ${ep.url}? The current one keeps signing for 24 hours.`)) return;
      try {
        showSecret(ep.url, (await Api.rotateWebhook(ep.id)).secret);
      } catch (e) {
        toast(errorText(e));
      }
      void refresh();
    },
    toggle: async (ep) => {
      await Api.updateWebhook(ep.id, { enabled: !ep.enabled }).then(
        () => toast(ep.enabled ? 'Endpoint disabled.' : 'Endpoint enabled.'),
        (e) => toast(errorText(e)),
      );
      void refresh();
    },
    remove: async (ep) => {
      if (!confirm(`Delete the endpoint ${ep.url} and its delivery log?`)) return;
      await Api.deleteWebhook(ep.id).then(() => toast('Endpoint deleted.'), (e) => toast(errorText(e)));
      void refresh();
    },
  };

  const form = addForm((url, secret) => {
    showSecret(url, secret);
    void refresh();
  });
  void refresh();
  return h('section', { class: 'webhooks' },
    h('p', {}, 'Lectern POSTs your events to these URLs, signed per Standard Webhooks with the endpoint’s secret; a failed delivery is retried for about a day.'),
    form,
    secretSlot,
    h('h2', {}, 'Endpoints'),
    list,
  );
}

/** The form that registers an endpoint; `added` gets its URL and secret. */
function addForm(added: (url: string, secret: string) => void): HTMLFormElement {
  const url = h('input', { id: 'webhook-url', type: 'url', required: true, maxlength: 2000, placeholder: 'https://example.com/lectern-events', autocomplete: 'off' });
  const description = h('input', { id: 'webhook-description', type: 'text', maxlength: 200, placeholder: 'Optional' });
  const boxes = EVENT_TYPES.map(({ type }) => h('input', { type: 'checkbox', value: type, 'aria-describedby': `event-hint-${type.replace('.', '-')}` }));
  const events = h('fieldset', { class: 'webhook-events' },
    h('legend', {}, 'Events'),
    ...EVENT_TYPES.map(({ type, hint }, i) => h('div', { class: 'event-choice' },
      h('label', { class: 'check' }, boxes[i], type),
      h('span', { class: 'meta', id: `event-hint-${type.replace('.', '-')}` }, hint))),
  );
  const error = h('p', { class: 'error', role: 'alert' });
  const form = h('form', { class: 'card webhook-form' },
    h('label', { for: 'webhook-url' }, 'Endpoint URL'), url,
    h('label', { for: 'webhook-description' }, 'Description'), description,
    events,
    error,
    h('div', { class: 'row' }, h('button', { type: 'submit', class: 'primary' }, 'Add endpoint')),
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.textContent = '';
    const chosen = boxes.filter((b) => b.checked).map((b) => b.value as WebhookEventType);
    if (!chosen.length) return void (error.textContent = 'Choose at least one event.');
    try {
      const made = await Api.createWebhook({ url: url.value.trim(), event_types: chosen, description: description.value.trim() });
      form.reset();
      added(made.url, made.secret);
    } catch (err) {
      error.textContent = errorText(err); // e.g. a private address: public addresses only
    }
  });
  return form;
}

/** The secret, shown once, with a way to copy it. */
function secretNotice(url: string, secret: string, dismiss: () => void): HTMLElement {
  const code = h('code', { class: 'secret' }, secret);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(secret);
      toast('Secret copied.');
    } catch {
      // No clipboard here (an insecure origin, a refusal): select it for the viewer.
      getSelection()?.selectAllChildren(code);
      toast('Press Ctrl+C (⌘C) to copy the selected secret.');
    }
  };
  return h('div', { class: 'card secret-box', role: 'status' },
    h('h3', {}, 'Signing secret'),
    h('p', {}, 'For ', h('strong', {}, url), '. Copy it now and keep it safe: ', h('strong', {}, 'it will not be shown again.')),
    h('div', { class: 'row' }, code, h('button', { type: 'button', 'aria-label': 'Copy secret', onclick: copy }, 'Copy')),
    h('div', { class: 'row' }, h('button', { type: 'button', onclick: dismiss }, 'I have saved it')),
  );
}

interface EndpointActions {
  rotate: (ep: WebhookEndpoint) => void;
  toggle: (ep: WebhookEndpoint) => void;
  remove: (ep: WebhookEndpoint) => void;
}

function endpointRow(ep: WebhookEndpoint, act: EndpointActions, log: HTMLElement): HTMLElement {
  const overlap = ep.previous_secret_until && ep.previous_secret_until * 1000 > Date.now();
  return h('li', { class: 'webhook', 'data-endpoint': ep.id, 'data-enabled': String(ep.enabled) },
    h('div', { class: 'row' },
      h('strong', { class: 'webhook-url' }, ep.url),
      h('span', { class: `badge ${ep.enabled ? 'enabled' : 'disabled'}` }, ep.enabled ? 'Enabled' : 'Disabled'),
      h('span', { class: 'spacer' }),
      h('button', { type: 'button', 'aria-label': `Rotate secret of ${ep.url}`, onclick: () => act.rotate(ep) }, 'Rotate secret'),
      h('button', { type: 'button', 'aria-label': `${ep.enabled ? 'Disable' : 'Enable'} endpoint ${ep.url}`, onclick: () => act.toggle(ep) }, ep.enabled ? 'Disable' : 'Enable'),
      h('button', { type: 'button', class: 'danger', 'aria-label': `Delete endpoint ${ep.url}`, onclick: () => act.remove(ep) }, 'Delete'),
    ),
    ep.description ? h('p', { class: 'meta' }, ep.description) : null,
    h('p', { class: 'meta' }, `Events: ${ep.event_types.join(', ')}`),
    !ep.enabled && ep.disabled_reason ? h('p', { class: 'error' }, `Disabled by Lectern: ${ep.disabled_reason}`) : null,
    overlap ? h('p', { class: 'meta' }, `The previous secret also signs until ${when(ep.previous_secret_until!)}.`) : null,
    log,
  );
}

/** The endpoint's delivery log, loaded when opened; looked at again every 1.5 s while
 * a delivery is pending. */
function deliveriesLog(ep: WebhookEndpoint, open: Set<string>): HTMLElement {
  const body = h('tbody', {});
  const note = h('p', { class: 'meta', 'aria-live': 'polite' });
  let timer = 0;
  let asked = 0;
  const load = async () => {
    window.clearTimeout(timer);
    const mine = ++asked;
    try {
      const items = await Api.webhookDeliveries(ep.id);
      if (mine !== asked) return;
      body.replaceChildren(...items.map((d) => deliveryRow(d, () => resend(d))));
      note.textContent = items.length ? `${items.length} deliver${items.length === 1 ? 'y' : 'ies'}, newest first.` : 'Nothing sent yet.';
      if (items.some((d) => d.state === 'pending') && details.open && details.isConnected) timer = window.setTimeout(load, 1500);
    } catch (e) {
      if (mine === asked) note.textContent = errorText(e);
    }
  };
  const resend = async (d: WebhookDelivery) => {
    await Api.resendDelivery(ep.id, d.id).then(() => toast('The delivery is sent again.'), (e) => toast(errorText(e)));
    void load();
  };
  const table = h('table', { class: 'deliveries' },
    h('caption', { class: 'meta' }, `Deliveries to ${ep.url}`),
    h('thead', {}, h('tr', {}, ...['Time', 'Event', 'State', 'Attempts', 'Last status', 'Latency (ms)', 'Response', ''].map((c) => h('th', { scope: 'col' }, c)))),
    body,
  );
  const details = h('details', { class: 'deliveries-log', open: open.has(ep.id) },
    h('summary', {}, 'Deliveries'),
    h('div', { class: 'row' }, note, h('span', { class: 'spacer' }),
      h('button', { type: 'button', 'aria-label': `Refresh deliveries of ${ep.url}`, onclick: () => void load() }, 'Refresh')),
    h('div', { class: 'table-scroll' }, table),
  );
  details.addEventListener('toggle', () => {
    if (details.open) open.add(ep.id);
    else open.delete(ep.id);
    if (details.open) void load();
    else window.clearTimeout(timer);
  });
  if (details.open) void load();
  return details;
}

function deliveryRow(d: WebhookDelivery, resend: () => void): HTMLElement {
  const answer = d.last_response ?? (d.last_error ? `(no answer: ${d.last_error})` : '');
  const next = d.state === 'pending' && d.next_attempt_at ? ` · next ${new Date(d.next_attempt_at * 1000).toLocaleTimeString()}` : '';
  return h('tr', { 'data-delivery': d.id, 'data-state': d.state },
    h('td', {}, when(d.created_at)),
    h('td', {}, h('code', {}, d.event_type)),
    h('td', {}, h('span', { class: `badge ${d.state}` }, STATE_LABEL[d.state] ?? d.state), next ? h('span', { class: 'meta' }, next) : null),
    h('td', { class: 'num' }, d.attempts),
    h('td', { class: 'num' }, d.last_status ?? '–'),
    h('td', { class: 'num' }, d.last_latency_ms ?? '–'),
    // Text only: whatever the endpoint answered is never read as HTML.
    h('td', {}, h('div', { class: 'response-excerpt' }, answer)),
    h('td', {}, h('button', { type: 'button', 'aria-label': `Resend ${d.event_type} delivery ${d.id}`, disabled: d.state === 'pending', onclick: resend }, 'Resend')),
  );
}
