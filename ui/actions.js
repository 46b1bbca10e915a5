/* global window */
import { useState } from 'preact/hooks'
import { html } from './html.js'
import { api } from './api.js'
import { TERMINAL } from './format.js'
import { useCan } from './role.js'

/**
 * What an operator may do to a transfer: cancel a running one, retry a
 * failed or canceled one, delete a finished one (asked twice; the focus
 * moves to the second button). A reader
 * sees none of these buttons.
 */
export function Actions ({ transfer, onChanged, onDeleted, onDeleting, onError, openRetry = false }) {
  const operator = useCan('operator')
  const [confirming, setConfirming] = useState(false)
  if (!operator) return null
  const t = transfer
  const act = fn => async () => {
    try { await fn() } catch (err) { onError(`${err.message} (${err.code})`) }
  }
  const cancel = act(async () => onChanged(await api('POST', `/v1/transfers/${t.id}/cancel`)))
  const retry = act(async () => {
    const again = await api('POST', `/v1/transfers/${t.id}/retry`)
    if (openRetry) window.location.hash = `#/transfers/${again.id}`
    else onChanged?.(t)
  })
  // onDeleting(true) first: a page showing the record stops reading it, or a read already queued would meet a 404.
  const remove = act(async () => {
    onDeleting?.(true)
    try {
      await api('DELETE', `/v1/transfers/${t.id}`)
    } catch (err) {
      onDeleting?.(false)
      throw err
    }
    onDeleted(t)
  })
  const done = TERMINAL.has(t.state)
  return html`<span class="actions">
    ${!done && html`<button type="button" class="small" onClick=${cancel} aria-label=${`Cancel ${t.id}`}>Cancel</button>`}
    ${(t.state === 'failed' || t.state === 'canceled') && html`<button type="button" class="small plain" onClick=${retry} aria-label=${`Retry ${t.id}`}>Retry</button>`}
    ${done && !confirming && html`<button type="button" class="small" onClick=${() => setConfirming(true)} aria-label=${`Delete ${t.id}`}>Delete</button>`}
    ${done && confirming && html`<button type="button" class="small danger" ref=${el => el?.focus()} onClick=${remove} aria-label=${`Really delete ${t.id}`}>Really delete</button>`}
  </span>`
}
