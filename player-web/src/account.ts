// Account pages reached from mail: "forgot password" (asks for a reset link), the
// reset page a reset mail links to (#/reset?token=…) and the verify landing page a
// confirmation mail links to (#/verify?token=…).
import { api, ApiError, session, setSession, type User } from './api';
import { errorText, h } from './dom';

export interface AccountPage { title: string; node: HTMLElement; focus?: HTMLElement }

function forgotPage(): AccountPage {
  const email = h('input', { id: 'email', type: 'email', required: true, autocomplete: 'email' });
  const error = h('p', { class: 'error', role: 'alert' });
  const done = h('p', { role: 'status' });
  const button = h('button', { type: 'submit', class: 'primary' }, 'Send me a link');
  const form = h('form', { class: 'card narrow' },
    h('h1', {}, 'Forgot your password?'),
    h('p', {}, 'Give the address you signed up with: we mail you a link to choose a new password.'),
    h('label', { for: 'email' }, 'Email'), email, error, done, button,
    h('p', {}, h('a', { href: '#/login' }, 'Back to sign in')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.textContent = '';
    try {
      const res = await api<{ message: string }>('POST', '/api/auth/password-reset', { email: email.value });
      done.textContent = `${res.message} The link works once, for 30 minutes.`;
      button.disabled = true;
    } catch (err) {
      error.textContent = errorText(err);
    }
  });
  return { title: 'Forgot password', node: form, focus: email };
}

function resetPage(token: string): AccountPage {
  const password = h('input', { id: 'password', type: 'password', required: true, minlength: 8, maxlength: 256, autocomplete: 'new-password' });
  const again = h('input', { id: 'again', type: 'password', required: true, minlength: 8, maxlength: 256, autocomplete: 'new-password' });
  const error = h('p', { class: 'error', role: 'alert' });
  const form = h('form', { class: 'card narrow' },
    h('h1', {}, 'Choose a new password'),
    h('label', { for: 'password' }, 'New password (at least 8 characters)'), password,
    h('label', { for: 'again' }, 'The same again'), again,
    error,
    h('button', { type: 'submit', class: 'primary' }, 'Set password'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.textContent = '';
    if (password.value !== again.value) {
      error.textContent = 'The two passwords differ.';
      return;
    }
    try {
      await api('POST', '/api/auth/password-reset/confirm', { token, password: password.value });
      setSession(null);
      form.replaceChildren(
        h('h1', {}, 'Password changed'),
        h('p', { role: 'status' }, 'Sign in with your new password.'),
        h('a', { class: 'button primary', href: '#/login' }, 'Sign in'));
    } catch (err) {
      error.textContent = err instanceof ApiError && err.status === 400 && err.code === 'invalid' && !/password must/.test(err.message)
        ? 'This link was used already or has expired. Ask for a new one.'
        : errorText(err);
      if (!/password must/.test(error.textContent)) form.append(h('p', {}, h('a', { href: '#/forgot' }, 'Ask for a new link')));
    }
  });
  return { title: 'Reset password', node: form, focus: password };
}

function verifyPage(token: string): AccountPage {
  const status = h('p', { role: 'status' }, 'Confirming your address…');
  const card = h('div', { class: 'card narrow' }, h('h1', {}, 'Confirm your address'), status);
  const next = () => h('a', { class: 'button primary', href: session() ? '#/' : '#/login' }, session() ? 'Continue' : 'Sign in');
  api<User & { email_verified: boolean }>('POST', '/api/auth/verify', { token })
    .then((user) => {
      status.textContent = `Thank you: ${user.email} is confirmed.`;
      const s = session();
      if (s && s.user.id === user.id) setSession({ ...s, user });
      card.append(next());
    })
    .catch((err) => {
      status.textContent = err instanceof ApiError && err.status === 409
        ? 'Your address is confirmed already.'
        : err instanceof ApiError && err.status === 400
          ? 'This link is invalid or has expired. Sign in and ask for a new one.'
          : errorText(err);
      card.append(next());
    });
  return { title: 'Confirm address', node: card };
}

/// The account page a route names, if it names one.
export function accountPage(parts: string[], params: URLSearchParams): AccountPage | null {
  const token = params.get('token') ?? '';
  if (parts[0] === 'forgot') return forgotPage();
  if (parts[0] === 'reset') return resetPage(token);
  if (parts[0] === 'verify') return verifyPage(token);
  return null;
}

/// The "Forgot password?" link under the sign-in form.
export function forgotLink(): HTMLElement {
  return h('p', {}, h('a', { href: '#/forgot' }, 'Forgot password?'));
}
