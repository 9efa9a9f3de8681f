// The demo page: a real client of the app. Data comes only from the REST API; the WebSocket
// (through client/realtime.js) only says which data changed, and each panel refetches its own.

import { initializeApp } from 'firebase/app';
import {
  browserSessionPersistence,
  connectAuthEmulator,
  createUserWithEmailAndPassword,
  getAuth,
  onIdTokenChanged,
  setPersistence,
  signInWithEmailAndPassword,
  signOut,
} from 'firebase/auth';
import { createRealtime } from 'chalice-realtime-client';

const PEER_KEY = 'chalice-realtime-demo/peer';
const LOG_LIMIT = 200;
// `?share=off`: a socket per tab, as before the tabs of a user shared one (the tabs benchmark compares both).
const SHARE_CONNECTION = new URLSearchParams(location.search).get('share') !== 'off';
const ROLE_LABELS = { leader: 'leader', follower: 'follower', own: 'own socket' };

const $ = (testid) => document.querySelector(`[data-testid="${testid}"]`);

let config = null;
let auth = null;
let session = null; // { uid, email } of the signed-in Firebase user
let realtime = null;
let peer = sessionStorage.getItem(PEER_KEY) || '';
const jobs = new Map(); // job_id -> job, as GET /jobs/{id} returned it

// ---------------------------------------------------------------- Firebase Auth (the JS SDK)

const AUTH_ERRORS = {
  'auth/invalid-credential': 'wrong email or password',
  'auth/wrong-password': 'wrong email or password',
  'auth/user-not-found': 'wrong email or password',
  'auth/email-already-in-use': 'an account with this email exists: sign in instead',
  'auth/weak-password': 'the password needs 6 characters or more',
  'auth/invalid-email': 'that is not an email address',
};

/** Firebase Auth against the local stack's emulator, one session per tab. */
async function startAuth() {
  const app = initializeApp({ apiKey: config.firebaseApiKey, projectId: config.firebaseProjectId });
  auth = getAuth(app);
  connectAuthEmulator(auth, config.authEmulatorUrl, { disableWarnings: true });
  // Session persistence is per tab (sessionStorage): two tabs of one browser can be two users.
  await setPersistence(auth, browserSessionPersistence);
  await auth.authStateReady();
  // Sign-in, sign-out and the hourly token refresh all come through here.
  onIdTokenChanged(auth, (user) => {
    if (user?.uid === session?.uid) return;
    if (session) leave();
    if (user) enter(user);
  });
}

/** The ID token for REST and the WebSocket: the SDK's cached one while fresh, else a new one. */
async function getToken({ forceRefresh = false } = {}) {
  if (!auth?.currentUser) throw new Error('signed out');
  return auth.currentUser.getIdToken(forceRefresh);
}

// ---------------------------------------------------------------- REST

async function api(method, path, body, retried = false) {
  const token = await getToken({ forceRefresh: retried });
  const response = await fetch(config.restUrl + path, {
    method,
    headers: { Authorization: `Bearer ${token}`, ...(body ? { 'Content-Type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  if ((response.status === 401 || response.status === 403) && !retried) return api(method, path, body, true);
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const message = data?.Message ?? data?.message ?? `${method} ${path}: HTTP ${response.status}`;
    // A limit used up: the API says when the same request may succeed (Retry-After, whole seconds).
    const retryAfter = response.status === 429 ? response.headers.get('Retry-After') : null;
    throw new Error(retryAfter ? `${message} (try again in ${retryAfter} s)` : message);
  }
  return data;
}

/** A refetch whose answer is applied only if no newer refetch of the same thing started meanwhile. */
function refetcher(load, render) {
  let latest = 0;
  return async (...args) => {
    const mine = ++latest;
    try {
      const data = await load(...args);
      if (mine === latest) render(data);
    } catch (error) {
      if (mine === latest) showError(error);
    }
  };
}

function showError(error) {
  const box = $('page-error');
  box.textContent = error.message ?? String(error);
  box.hidden = false;
  clearTimeout(showError.timer);
  showError.timer = setTimeout(() => (box.hidden = true), 8000);
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name === 'class') node.className = value;
    else if (name === 'dataset') Object.assign(node.dataset, value);
    else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

function clock(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? '' : date.toLocaleTimeString();
}

// ---------------------------------------------------------------- chat

const refreshUnread = refetcher(
  () => api('GET', '/messages/unread-count'),
  ({ unread, by_user: byUser = {} }) => {
    const badge = $('unread-badge');
    badge.textContent = String(unread);
    badge.dataset.count = String(unread);
    const list = $('unread-list');
    list.replaceChildren(
      ...Object.entries(byUser)
        .filter(([uid, count]) => count > 0 && uid !== peer)
        .map(([uid, count]) =>
          el(
            'li',
            { 'data-testid': 'unread-from', dataset: { uid } },
            `${count} unread from `,
            el('code', {}, uid),
            ' ',
            el('button', { type: 'button', class: 'link', onclick: () => openConversation(uid) }, 'open'),
          ),
        ),
    );
    // The open conversation is on screen: mark it read. The server then notifies this page again,
    // and the refetch finds nothing unread from the peer, so this does not loop.
    if (peer && byUser[peer] > 0 && document.visibilityState === 'visible') {
      api('POST', '/messages/read', { with: peer }).catch(showError);
    }
  },
);

const refreshConversation = refetcher(
  async () => (peer ? api('GET', `/messages?with=${encodeURIComponent(peer)}&limit=50`) : { messages: [] }),
  ({ messages }) => {
    const list = $('chat-messages');
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    // The API answers newest first; a chat reads oldest first.
    list.replaceChildren(
      ...[...messages].reverse().map((message) =>
        el(
          'li',
          {
            class: message.from === session?.uid ? 'mine' : 'theirs',
            'data-testid': 'chat-message',
            dataset: { messageId: message.message_id, from: message.from },
          },
          message.text,
          el('time', { datetime: message.sent_at }, clock(message.sent_at)),
        ),
      ),
    );
    if (atBottom) list.scrollTop = list.scrollHeight;
  },
);

function openConversation(uid) {
  peer = uid.trim();
  sessionStorage.setItem(PEER_KEY, peer);
  $('chat-peer').value = peer;
  const withLine = $('chat-with');
  withLine.replaceChildren('Conversation with ', el('code', {}, peer));
  withLine.hidden = !peer;
  $('chat-text').disabled = $('chat-send').disabled = !peer;
  refreshConversation();
  refreshUnread();
}

async function sendMessage(event) {
  event.preventDefault();
  const input = $('chat-text');
  const text = input.value;
  if (!peer || !text.trim()) return;
  input.disabled = true;
  try {
    await api('POST', '/messages', { to: peer, text });
    input.value = '';
    refreshConversation(); // this page's own action; other pages learn of it from the socket
  } catch (error) {
    showError(error);
  } finally {
    input.disabled = false;
    input.focus();
  }
}

// ---------------------------------------------------------------- jobs

const FINISHED = new Set(['succeeded', 'failed', 'cancelled']);

function renderJobs() {
  const sorted = [...jobs.values()].sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)));
  $('job-list').replaceChildren(
    ...sorted.map((job) => {
      const progress = Math.max(0, Math.min(100, Number(job.progress) || 0));
      const detail =
        job.status === 'failed'
          ? `error: ${job.error ?? 'failed'}`
          : job.result != null
            ? `result: ${JSON.stringify(job.result)}`
            : null;
      return el(
        'li',
        { 'data-testid': 'job', dataset: { jobId: job.job_id, status: job.status, kind: job.kind } },
        el(
          'div',
          { class: 'job-head' },
          el('span', {}, el('strong', {}, job.kind), ' ', el('code', { title: job.job_id }, job.job_id.slice(-8))),
          el('span', { class: 'status', 'data-testid': 'job-status' }, `${job.status} · ${progress}%`),
          FINISHED.has(job.status)
            ? null
            : el(
                'button',
                { type: 'button', class: 'cancel', 'data-testid': 'cancel-job', onclick: () => cancelJob(job.job_id) },
                'Cancel',
              ),
        ),
        el(
          'div',
          {
            class: 'progress',
            role: 'progressbar',
            'aria-label': `${job.kind} job ${job.job_id.slice(-8)}: progress`,
            'aria-valuemin': '0',
            'aria-valuemax': '100',
            'aria-valuenow': String(progress),
            'data-testid': 'job-progress',
          },
          el('div', { style: `width: ${progress}%` }),
        ),
        detail && el('div', { class: 'detail', 'data-testid': 'job-detail' }, detail),
      );
    }),
  );
}

const refreshJobList = refetcher(
  () => api('GET', '/jobs?limit=10'),
  (data) => {
    jobs.clear();
    for (const job of data.jobs ?? []) jobs.set(job.job_id, job);
    renderJobs();
  },
);

async function refreshJob(jobId) {
  try {
    jobs.set(jobId, await api('GET', `/jobs/${encodeURIComponent(jobId)}`));
    renderJobs();
  } catch (error) {
    showError(error);
  }
}

/** On `jobs-updated`: refetch the jobs still running; a job this page does not know means the list. */
function onJobsUpdated() {
  const running = [...jobs.values()].filter((job) => !FINISHED.has(job.status));
  if (running.length === 0) return refreshJobList();
  for (const job of running) refreshJob(job.job_id);
}

/** Cancel: a queued job is cancelled at once; a running one at its next progress point (`jobs-updated`). */
async function cancelJob(jobId) {
  try {
    const { status } = await api('POST', `/jobs/${encodeURIComponent(jobId)}/cancel`);
    const job = jobs.get(jobId);
    if (job) jobs.set(jobId, { ...job, status });
    renderJobs();
  } catch (error) {
    showError(error);
  }
}

async function startJob(event) {
  event.preventDefault();
  const kind = event.submitter?.value ?? 'report';
  const seconds = Number($('job-seconds').value) || 5;
  try {
    const { job_id: jobId } = await api('POST', '/jobs', { kind, params: kind === 'report' ? { seconds } : {} });
    jobs.set(jobId, { job_id: jobId, kind, status: 'queued', progress: 0, created_at: new Date().toISOString() });
    renderJobs();
    refreshJob(jobId);
  } catch (error) {
    showError(error);
  }
}

// ---------------------------------------------------------------- payments

const refreshPayments = refetcher(
  () => api('GET', '/payments?limit=20'),
  ({ payments }) => {
    $('payment-list').replaceChildren(
      ...payments.map((payment) =>
        el(
          'li',
          { 'data-testid': 'payment', dataset: { paymentId: payment.payment_id, status: payment.status } },
          el('span', {}, formatAmount(payment.amount, payment.currency), ' ', el('span', { class: 'status' }, payment.status)),
          el('code', {}, String(payment.stripe_object_id ?? payment.payment_id).slice(0, 18)),
        ),
      ),
    );
  },
);

function formatAmount(amount, currency = 'usd') {
  try {
    return new Intl.NumberFormat(undefined, { style: 'currency', currency: currency.toUpperCase() }).format(amount / 100);
  } catch {
    return `${amount} ${currency}`;
  }
}

async function firePayment() {
  const status = $('payment-status');
  status.textContent = 'sending a signed test webhook…';
  // Local stack only: the dev server signs a Stripe test event for this user and posts it to the webhook.
  const response = await fetch('/dev/test-payment', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ user_id: session.uid, amount: 1999, currency: 'usd', type: 'payment_intent.succeeded' }),
  }).catch((error) => ({ ok: false, status: 0, statusText: error.message }));
  status.textContent = response.ok ? 'sent; the list updates when payments-updated arrives' : `failed: HTTP ${response.status}`;
}

// ---------------------------------------------------------------- events

function logEvent({ key, count }) {
  const log = $('event-log');
  const now = new Date();
  log.prepend(
    el(
      'li',
      { 'data-testid': 'event-log-entry', dataset: { key } },
      el('time', { datetime: now.toISOString() }, now.toLocaleTimeString()),
      count > 1 ? `${key} ×${count}` : key,
    ),
  );
  while (log.children.length > LOG_LIMIT) log.lastElementChild.remove();
}

function showState(state) {
  const badge = $('connection-state');
  badge.textContent = state;
  badge.dataset.state = state;
}

/** Whether this tab holds the group's socket (leader), follows the tab that does, or has its own. */
function showRole(role) {
  const badge = $('connection-role');
  badge.textContent = ROLE_LABELS[role] ?? '';
  badge.dataset.role = role ?? '';
  badge.hidden = !role;
}

function refreshEverything() {
  refreshUnread();
  refreshConversation();
  refreshJobList();
  refreshPayments();
}

function startRealtime() {
  realtime = createRealtime({ url: config.wsUrl, getToken, shareConnection: SHARE_CONNECTION });
  realtime.onState(showState);
  showState(realtime.state);
  realtime.onRole(showRole);
  showRole(realtime.role);
  realtime.on('*', logEvent);
  realtime.on('chat-messages-updated', () => {
    refreshUnread();
    refreshConversation();
  });
  realtime.on('jobs-updated', onJobsUpdated);
  realtime.on('payments-updated', () => refreshPayments());
  // Frames sent while the socket was down are lost: after a reconnect, refetch everything shown.
  realtime.on('resync', refreshEverything);
}

// ---------------------------------------------------------------- session

function enter(user) {
  session = { uid: user.uid, email: user.email ?? '' };
  $('auth-panel').hidden = true;
  $('app').hidden = false;
  $('signed-in').hidden = false;
  $('my-uid').textContent = session.uid;
  $('my-email').textContent = session.email;
  startRealtime();
  openConversation(peer);
  refreshEverything();
}

function leave() {
  realtime?.close();
  realtime = null;
  session = null;
  jobs.clear();
  showState('closed');
  showRole(null);
  $('app').hidden = true;
  $('signed-in').hidden = true;
  $('auth-panel').hidden = false;
}

async function onAuthSubmit(event) {
  event.preventDefault();
  const form = event.target;
  const error = $('auth-error');
  error.hidden = true;
  const signIn = event.submitter?.value === 'sign-up' ? createUserWithEmailAndPassword : signInWithEmailAndPassword;
  try {
    await signIn(auth, form.email.value.trim(), form.password.value); // onIdTokenChanged enters
    form.reset();
  } catch (failure) {
    error.textContent = AUTH_ERRORS[failure.code] ?? failure.message;
    error.hidden = false;
  }
}

async function main() {
  $('auth-form').addEventListener('submit', onAuthSubmit);
  $('sign-out').addEventListener('click', () => signOut(auth).catch(showError));
  $('copy-uid').addEventListener('click', () => navigator.clipboard?.writeText(session?.uid ?? ''));
  $('peer-form').addEventListener('submit', (event) => {
    event.preventDefault();
    openConversation($('chat-peer').value);
  });
  $('send-form').addEventListener('submit', sendMessage);
  $('job-form').addEventListener('submit', startJob);
  $('fire-payment').addEventListener('click', () => firePayment().catch(showError));

  try {
    const response = await fetch('/config.json');
    if (!response.ok) throw new Error(`GET /config.json: HTTP ${response.status}`);
    config = await response.json();
  } catch (error) {
    showError(new Error(`cannot load the local stack's configuration: ${error.message}`));
    return;
  }
  try {
    await startAuth(); // a tab reloaded while signed in is signed in again from its session
  } catch (error) {
    showError(new Error(`cannot start Firebase Auth: ${error.message}`));
    return;
  }
  document.body.dataset.ready = 'true';
}

main();
