/* global setTimeout, clearTimeout, atob, getComputedStyle */
import { useEffect, useRef, useState } from 'preact/hooks'
import { html } from './html.js'
import { api } from './api.js'
import { bytes } from './format.js'

/** The agents send their swarm stats about once a second; asking more often shows nothing new. */
const POLL_MS = 1000

/** Which pieces a base64 bitfield holds (piece 0 in the high bit of the first byte), as the agents' Bitfield encodes it. */
export function piecesOf (base64, pieces) {
  const have = new Uint8Array(pieces)
  if (base64 === undefined) return have
  const raw = atob(base64)
  for (let i = 0; i < pieces; i++) have[i] = (raw.charCodeAt(i >> 3) >> (7 - (i & 7))) & 1
  return have
}

/** What a destination holds: its last progress report, or its pieces when they are newer (both arrive about once a second). */
function received (p, have, swarm) {
  let fromPieces = 0
  for (let i = 0; i < swarm.pieces; i++) if (have[i] === 1) fromPieces += Math.min(swarm.pieceSize, swarm.size - i * swarm.pieceSize)
  return Math.max(p.bytesDone, fromPieces)
}

/** One participant's pieces as a strip of cells: drawn on a canvas, so 8,192 pieces cost one element. */
function PieceStrip ({ agent, have, pieces }) {
  const ref = useRef()
  const count = have.reduce((a, b) => a + b, 0)
  useEffect(() => {
    const canvas = ref.current
    if (canvas === undefined || pieces === 0) return
    const style = getComputedStyle(canvas)
    const ctx = canvas.getContext('2d')
    ctx.fillStyle = style.getPropertyValue('--line').trim()
    ctx.fillRect(0, 0, canvas.width, canvas.height)
    ctx.fillStyle = style.getPropertyValue('--ok').trim()
    const w = canvas.width / pieces
    // A gap between cells when they are wide enough to show one.
    const gap = w >= 6 ? 1 : 0
    for (let i = 0; i < pieces; i++) if (have[i] === 1) ctx.fillRect(Math.floor(i * w), 0, Math.max(1, Math.ceil(w) - gap), canvas.height)
  })
  return html`<canvas ref=${ref} class="pieces" width=${pieces >= 1024 ? pieces : pieces * Math.floor(1024 / Math.max(1, pieces))} height="16" role="img"
    aria-label=${`${agent} holds ${count} of ${pieces} pieces`} data-have=${count} data-pieces=${pieces}></canvas>`
}

/**
 * A distribution's swarm, live while it runs: each host's pieces, what the
 * seed uploaded against the file's size, and who served whom. Polls
 * GET /v1/transfers/:id/swarm once a second while the distribution runs,
 * and once when it has ended.
 */
export function Swarm ({ id, running }) {
  const [swarm, setSwarm] = useState()
  const [error, setError] = useState()
  useEffect(() => {
    let timer
    let stopped = false
    const poll = async () => {
      try {
        const next = await api('GET', `/v1/transfers/${id}/swarm`)
        if (stopped) return
        setSwarm(next)
        setError(undefined)
      } catch (err) {
        if (!stopped) setError(err.message)
      }
      if (!stopped && running) timer = setTimeout(poll, POLL_MS)
    }
    void poll()
    return () => { stopped = true; clearTimeout(timer) }
  }, [id, running])

  if (swarm === undefined) return error !== undefined ? html`<p class="error" role="alert">${error}</p>` : null
  const seed = swarm.participants.find(p => p.role === 'seed')
  return html`
    <section class="swarm" aria-labelledby="swarm-title">
      <h2 id="swarm-title">Swarm</h2>
      ${error !== undefined && html`<p class="error" role="alert">${error}</p>`}
      ${swarm.pieces === 0
        ? html`<p>The seed is reading the source to make the manifest…</p>`
        : html`
      <p>${swarm.pieces} pieces of ${bytes(swarm.pieceSize)}, ${bytes(swarm.size)} in all.
        ${seed !== undefined && html` The seed <strong>${seed.agent}</strong> uploaded <span data-seed-uploaded=${seed.uploaded}>${bytes(seed.uploaded)}</span>${' '}
        (${swarm.size > 0 ? (seed.uploaded / swarm.size).toFixed(2) : '0'}× the file); the destinations serve each other the rest.`}</p>
      <div class="table-wrap">
        <table class="piece-map">
          <thead><tr><th scope="col">Host</th><th scope="col">Role</th><th scope="col">Pieces</th><th scope="col">Received</th><th scope="col">Uploaded</th></tr></thead>
          <tbody>${swarm.participants.map(p => {
            const have = p.role === 'seed' ? new Uint8Array(swarm.pieces).fill(1) : piecesOf(p.have, swarm.pieces)
            return html`
            <tr key=${p.agent} data-participant=${p.agent}>
              <th scope="row">${p.agent}</th>
              <td>${p.role}</td>
              <td class="strip"><${PieceStrip} agent=${p.agent} have=${have} pieces=${swarm.pieces} /></td>
              <td class="num">${p.role === 'seed' ? '–' : bytes(received(p, have, swarm))}</td>
              <td class="num">${bytes(p.uploaded)}</td>
            </tr>`
          })}</tbody>
        </table>
      </div>
      <h3>Who served whom</h3>
      ${swarm.served.length === 0
        ? html`<p class="hint">No piece served yet.</p>`
        : html`<div class="table-wrap"><table class="served">
          <thead><tr><th scope="col">From</th><th scope="col">To</th><th scope="col">Bytes</th></tr></thead>
          <tbody>${[...swarm.served].sort((a, b) => b.bytes - a.bytes).map(s => html`<tr key=${`${s.from}>${s.to}`}><td>${s.from}</td><td>${s.to}</td><td class="num">${bytes(s.bytes)}</td></tr>`)}</tbody>
        </table></div>`}`}
    </section>`
}
