// A tiny DOM builder: pages are plain functions that return elements.

type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, string | number | boolean | null | undefined | EventListener>;

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: (Child | Child[])[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v as EventListener);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

export function toast(message: string): void {
  const t = document.getElementById('toast');
  if (!t) return;
  t.textContent = message;
  t.classList.add('show');
  window.clearTimeout((t as unknown as { timer?: number }).timer);
  (t as unknown as { timer?: number }).timer = window.setTimeout(() => t.classList.remove('show'), 4000);
}

export function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

export function statusBadge(status: string, percent: number): HTMLElement {
  const label: Record<string, string> = {
    awaiting_upload: 'Awaiting upload',
    processing: `Processing ${percent}%`,
    playable: `Watchable · encoding ${percent}%`,
    ready: 'Ready',
    failed: 'Failed',
  };
  return h('span', { class: `badge ${status}` }, label[status] ?? status);
}
