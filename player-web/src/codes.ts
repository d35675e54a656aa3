// Enrollment codes: the studio's panel (make single- or multi-use codes with an expiry,
// see their uses, withdraw them) and the student's way into a priced course with one.
import { Api, type CourseDetail, type EnrollmentCode } from './api';
import { errorText, h, toast } from './dom';
import { formatPrice } from './format';

export function codesPanel(courseId: string): HTMLElement {
  const list = h('ul', { class: 'code-list' });
  const uses = h('input', { type: 'number', min: 1, max: 100000, placeholder: 'any', 'aria-label': 'Students per code' });
  const days = h('input', { type: 'number', min: 1, max: 3650, placeholder: 'never', 'aria-label': 'Days until the code expires' });
  const error = h('p', { class: 'error', role: 'alert' });
  const refresh = async () => {
    const codes = await Api.codes(courseId).catch(() => [] as EnrollmentCode[]);
    list.replaceChildren(...codes.map((c) => h('li', { 'data-code': c.code },
      h('code', {}, c.code),
      h('span', { class: 'meta' }, ` ${c.uses}${c.max_uses ? ` of ${c.max_uses}` : ''} used${c.expires_at ? ` · expires ${new Date(c.expires_at * 1000).toLocaleDateString()}` : ''}`),
      h('button', { type: 'button', class: 'danger', 'aria-label': `Delete code ${c.code}`, onclick: async () => {
        await Api.deleteCode(courseId, c.code).catch((e) => toast(errorText(e)));
        void refresh();
      } }, 'Delete'))));
  };
  const form = h('form', { class: 'inline code-form' }, uses, days, h('button', { type: 'submit' }, 'Make a code'), error);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.textContent = '';
    try {
      const made = await Api.createCode(courseId, {
        ...(uses.value ? { max_uses: Number(uses.value) } : {}),
        ...(days.value ? { expires_in_days: Number(days.value) } : {}),
      });
      toast(`New code: ${made.code}`);
      void refresh();
    } catch (err) {
      error.textContent = errorText(err);
    }
  });
  void refresh();
  return h('details', { class: 'codes-panel' }, h('summary', {}, 'Enrollment codes (free access)'), form, list);
}

/** How a student gets into a course: free; priced, bought (when a payment provider is
 * set up) or with a code from its owner. */
export function enrollBox(course: CourseDetail, after: () => void): HTMLElement {
  const priced = course.price_cents > 0;
  const code = h('input', { type: 'text', placeholder: 'XXXX-XXXX-XXXX', autocomplete: 'off', 'aria-label': 'Enrollment code' });
  const btn = h('button', { type: 'submit', class: priced && course.can_buy ? '' : 'primary' }, priced ? 'Enroll with code' : 'Enroll for free');
  const buy = course.can_buy
    ? h('button', { type: 'button', class: 'primary', onclick: async () => {
        try {
          // The payment page is the provider's; the enrollment follows its signed event.
          location.href = (await Api.checkout(course.id)).url;
        } catch (err) {
          toast(errorText(err));
        }
      } }, `Buy for ${formatPrice(course.price_cents)}`)
    : null;
  const form = h('form', { class: 'enroll' },
    priced && !course.can_buy ? h('p', {}, `This course costs ${formatPrice(course.price_cents)}. It cannot be bought here yet; with an enrollment code from its teacher you are in for free.`) : null,
    buy,
    priced && course.can_buy ? h('p', {}, 'Or, with an enrollment code from its teacher:') : null,
    priced ? code : null, btn);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    btn.disabled = true;
    try {
      await Api.enroll(course.id, priced ? code.value.trim() : undefined);
      toast('Enrolled.');
      after();
    } catch (err) {
      toast(errorText(err));
      btn.disabled = false;
    }
  });
  return form;
}
