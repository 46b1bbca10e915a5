import { html } from './html.js'
import { duration, eta, percent, rate } from './format.js'

export function Progress ({ transfer }) {
  const p = percent(transfer.progress, transfer.state)
  const label = p === undefined ? 'size not known yet' : `${p} %`
  return html`<span class="progress">
    <progress max="100" value=${p ?? undefined} aria-label=${`progress of ${transfer.id}`}>${label}</progress>
    <span class="pct" data-percent>${p === undefined ? '' : `${p} %`}</span>
  </span>`
}

export function StateBadge ({ state }) {
  const tone = state === 'succeeded' ? 'ok' : state === 'failed' ? 'bad' : state === 'canceled' ? 'muted' : 'busy'
  return html`<span class=${`badge ${tone}`} data-state>${state}</span>`
}

/** A row's live fields; ETA only while it moves. */
export function rateAndEta (t) {
  const moving = t.state === 'active'
  return { rate: moving ? rate(t.progress.rate) : '–', eta: moving ? duration(eta(t.progress)) : '–' }
}

/** Applies a transfer.<id>.progress event to a record, as the API would show it next. */
export function withProgress (t, data) {
  return { ...t, progress: { ...t.progress, bytesDone: data.bytesDone, bytesTotal: data.bytesTotal ?? t.progress.bytesTotal, rate: data.rate, files: data.files ?? t.progress.files } }
}
