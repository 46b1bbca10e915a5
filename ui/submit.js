/* global window */
import { useState } from 'preact/hooks'
import { html } from './html.js'
import { api } from './api.js'

export function SubmitPage () {
  const [source, setSource] = useState('')
  const [destinations, setDestinations] = useState('')
  const [priority, setPriority] = useState('0')
  const [error, setError] = useState()
  const [busy, setBusy] = useState(false)

  const submit = async e => {
    e.preventDefault()
    const dests = destinations.split('\n').map(s => s.trim()).filter(s => s !== '')
    // One destination is a transfer, several a distribution: the API's two shapes.
    const body = { source: source.trim(), ...(dests.length > 1 ? { destinations: dests } : { destination: dests[0] ?? '' }), priority: Number(priority) }
    setBusy(true)
    try {
      const rec = await api('POST', '/v1/transfers', body)
      window.location.hash = `#/transfers/${rec.id}`
    } catch (err) {
      // The API's own message: it names the field and what is wrong with it.
      setError(`${err.message} (${err.code})`)
    } finally {
      setBusy(false)
    }
  }
  return html`
    <h1>New transfer</h1>
    <form class="submit" onSubmit=${submit}>
      <label for="source">Source</label>
      <input id="source" name="source" required placeholder="agent://store-1/data/sample.bin" value=${source} onInput=${e => setSource(e.currentTarget.value)} />
      <label for="destinations">Destination <span class="hint">(one per line; several make a distribution)</span></label>
      <textarea id="destinations" name="destinations" rows="3" required placeholder="agent://compute-1/data/sample.bin" value=${destinations} onInput=${e => setDestinations(e.currentTarget.value)}></textarea>
      <label for="priority">Priority</label>
      <input id="priority" name="priority" type="number" step="1" value=${priority} onInput=${e => setPriority(e.currentTarget.value)} />
      <div><button type="submit" disabled=${busy}>Submit</button></div>
      ${error !== undefined && html`<p class="error" role="alert" id="submit-error">${error}</p>`}
    </form>`
}
