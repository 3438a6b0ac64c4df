// Porteiro hosted UI enhancements. Every page works without this file; with it, forms are
// checked before they are sent (seed 003: email format, password rules, trimmed inputs), the
// password strength meter updates live, and forms are submitted with fetch so the page can show
// a loading state and the server's message without reloading. Forms whose answer is a page of
// its own (`data-busy`: the two-factor setup and new backup codes) are sent normally, with the
// same loading state; `data-print` buttons print the page.
'use strict';

(function () {
  const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
  const LETTER = /\p{Alphabetic}/u;
  const DIGIT = /[0-9]/;
  const SPECIAL = /[^\p{Alphabetic}\p{N}\p{White_Space}]/u;
  const LEVELS = ['weak', 'weak', 'medium', 'good', 'strong'];

  const msg = (name) => document.body.dataset[name] || '';

  // The four criteria of seed 003, as the server counts them (crates/core domain/password.rs).
  function strength(password) {
    const criteria = [
      Array.from(password).length >= 8,
      LETTER.test(password),
      DIGIT.test(password),
      SPECIAL.test(password),
    ];
    const score = criteria.filter(Boolean).length;
    return { score, level: LEVELS[score] };
  }

  // The server's policy checks that need no word list; the server checks the rest.
  function policyError(password) {
    const length = Array.from(password).length;
    if (length < 8) return msg('msgTooShort');
    if (length > 128) return msg('msgTooLong');
    if (!LETTER.test(password)) return msg('msgNoLetter');
    if (!DIGIT.test(password)) return msg('msgNoDigit');
    return '';
  }

  // Passwords the server refused (weak_password: its breached list and guessability check,
  // which the four criteria cannot see), per input: while the field still holds one, the meter
  // shows the server's decision instead of the criteria. Kept here, never in the page.
  const refused = new WeakMap();
  const meters = new WeakMap();

  function setupMeter(input) {
    const form = input.form;
    const meter = form && form.querySelector('[data-meter]');
    if (!meter) return;
    meter.hidden = false;
    const bars = meter.querySelectorAll('.bars i');
    const text = meter.querySelector('.meter-text');
    const update = () => {
      const value = input.value;
      if (!value) {
        delete meter.dataset.level;
        bars.forEach((bar) => bar.classList.remove('on'));
        text.textContent = '';
        return;
      }
      const { score, level } = refused.get(input) === value ? { score: 1, level: 'weak' } : strength(value);
      meter.dataset.level = level;
      meter.dataset.score = String(score);
      bars.forEach((bar, i) => bar.classList.toggle('on', i < score));
      text.textContent = text.dataset[level] || '';
    };
    input.addEventListener('input', update);
    meters.set(input, update);
    update();
  }

  function showAlert(form, message, kind) {
    let alert = form.querySelector('[data-alert]');
    if (!alert) {
      alert = document.createElement('div');
      alert.setAttribute('data-alert', '');
      form.prepend(alert);
    }
    alert.className = 'alert ' + (kind || 'error');
    alert.setAttribute('role', kind === 'notice' ? 'status' : 'alert');
    alert.textContent = message;
    alert.hidden = !message;
  }

  function markInvalid(form, field) {
    form.querySelectorAll('[aria-invalid="true"]').forEach((el) => el.removeAttribute('aria-invalid'));
    const input = field && form.elements.namedItem(field);
    if (input && input.focus) {
      input.setAttribute('aria-invalid', 'true');
      input.focus();
    }
  }

  // The first problem with the form, as [message, field name], or null.
  function validate(form) {
    for (const input of form.querySelectorAll('input')) {
      if (input.type !== 'password' && input.type !== 'hidden' && !input.hidden) {
        input.value = input.value.trim();
      }
    }
    for (const input of form.querySelectorAll('input[required]')) {
      if (!input.value) return [msg('msgRequired'), input.name];
    }
    for (const input of form.querySelectorAll('[data-email]')) {
      if (!EMAIL.test(input.value)) return [msg('msgInvalidEmail'), input.name];
    }
    for (const input of form.querySelectorAll('[data-identifier]')) {
      if (input.value.includes('@') && !EMAIL.test(input.value)) {
        return [msg('msgInvalidEmail'), input.name];
      }
    }
    for (const input of form.querySelectorAll('[data-policy]')) {
      const problem = policyError(input.value);
      if (problem) return [problem, input.name];
    }
    for (const input of form.querySelectorAll('[data-confirm]')) {
      const other = form.elements.namedItem(input.dataset.confirm);
      if (other && other.value !== input.value) return [msg('msgMismatch'), input.name];
    }
    return null;
  }

  function setBusy(form, busy) {
    form.querySelectorAll('button[type="submit"]').forEach((button) => {
      if (busy) {
        button.dataset.label = button.textContent;
        button.textContent = msg('msgLoading');
        button.disabled = true;
        button.setAttribute('aria-busy', 'true');
      } else {
        if (button.dataset.label) button.textContent = button.dataset.label;
        button.disabled = false;
        button.removeAttribute('aria-busy');
      }
    });
    form.setAttribute('aria-busy', busy ? 'true' : 'false');
  }

  async function submit(form) {
    setBusy(form, true);
    let response;
    try {
      response = await fetch(form.action, {
        method: 'POST',
        headers: {
          Accept: 'application/json',
          'Content-Type': 'application/x-www-form-urlencoded',
        },
        body: new URLSearchParams(new FormData(form)),
        credentials: 'same-origin',
      });
    } catch (_) {
      setBusy(form, false);
      showAlert(form, msg('msgNetwork'));
      return;
    }
    let data = {};
    try {
      data = await response.json();
    } catch (_) {
      data = {};
    }
    if (response.ok && data.status === 'success') {
      const then = form.dataset.thenRedirect;
      if (then) {
        // Seed 003 recovery: a generic message, then back to sign-in after 3 seconds.
        showAlert(form, form.dataset.sent + ' ' + form.dataset.redirecting, 'notice');
        form.querySelectorAll('input:not([type="hidden"])').forEach((el) => { el.disabled = true; });
        setTimeout(() => window.location.assign(data.redirect || then), 3000);
        return;
      }
      window.location.assign(data.redirect || window.location.href);
      return;
    }
    if (data.redirect) {
      // A failure that ends this page (a sign-in's second step that expired): go on.
      window.location.assign(data.redirect);
      return;
    }
    setBusy(form, false);
    if (data.csrf_token) {
      // The page's token had gone stale; the server sent a fresh one for the retry.
      document.querySelectorAll('input[name="csrf_token"]').forEach((input) => { input.value = data.csrf_token; });
    }
    let message = data.message;
    if (response.status === 429 && !message) {
      const wait = response.headers.get('Retry-After') || '1';
      message = msg('msgTooMany').replace('{seconds}', wait);
    }
    showAlert(form, message || msg('msgInternal'));
    markInvalid(form, data.field);
    if (data.code === 'weak_password') {
      form.querySelectorAll('input[data-strength]').forEach((input) => {
        refused.set(input, input.value);
        const update = meters.get(input);
        if (update) update();
      });
    }
    // What the page keeps for one refusal (the sign-in page's link to a new confirmation mail).
    form.parentElement.querySelectorAll('[data-show-on]').forEach((el) => {
      el.hidden = el.dataset.showOn !== data.code;
    });
  }

  function enhance(form) {
    form.noValidate = true;
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      if (form.getAttribute('aria-busy') === 'true') return;
      const problem = validate(form);
      if (problem) {
        showAlert(form, problem[0]);
        markInvalid(form, problem[1]);
        return;
      }
      submit(form);
    });
  }

  // A normal submission (the answer is a new page), with the loading state while it runs.
  function busyOnSubmit(form) {
    form.addEventListener('submit', (event) => {
      if (form.getAttribute('aria-busy') === 'true') {
        event.preventDefault();
        return;
      }
      for (const input of form.querySelectorAll('input[type="text"]')) input.value = input.value.trim();
      setBusy(form, true);
    });
  }

  document.querySelectorAll('input[data-strength]').forEach(setupMeter);
  document.querySelectorAll('form[data-enhance]').forEach(enhance);
  document.querySelectorAll('form[data-busy]').forEach(busyOnSubmit);
  document.querySelectorAll('button[data-print]').forEach((button) => {
    button.hidden = false;
    button.addEventListener('click', () => window.print());
  });
  // Coming back through the history must not leave buttons disabled.
  window.addEventListener('pageshow', (event) => {
    if (!event.persisted) return;
    document.querySelectorAll('form[data-enhance], form[data-busy]').forEach((form) => {
      setBusy(form, false);
      form.querySelectorAll('input:disabled').forEach((input) => { input.disabled = false; });
    });
  });
})();
