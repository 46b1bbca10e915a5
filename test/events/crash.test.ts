import { afterEach, describe, expect, it } from 'vitest'
import { TestMesh } from '../helpers/mesh.ts'
import { Receiver } from './helpers.ts'
import type { DeliveryLogEntry } from '../../coordinator/events/index.ts'

// Retries every 200 ms for a while instead of over a day; the first attempt may hang for a minute.
const FLAGS = [
  '--webhook-allow', 'loopback',
  '--webhook-retry-schedule', Array.from({ length: 40 }, () => 200).join(','),
  '--webhook-interval', '20',
  '--webhook-timeout', '60000'
]

describe('webhook delivery across a coordinator crash (SIGKILL)', () => {
  let mesh: TestMesh | undefined
  let receiver: Receiver | undefined
  afterEach(async () => {
    await mesh?.stop()
    await receiver?.close()
    mesh = undefined
    receiver = undefined
  })

  it('delivers an event whose delivery was cut off by SIGKILL after the restart, to a receiver that was down meanwhile, with the same webhook-id', async () => {
    receiver = await Receiver.start()
    const r = receiver
    // The first request is taken and never answered: the coordinator dies mid-delivery.
    r.mode = 'hang'
    mesh = await TestMesh.create()
    const m = mesh
    await m.startCoordinator(FLAGS)
    const hook = await m.api('POST', '/v1/webhooks', { url: r.url, topics: ['transfer.#'] })
    expect(hook.status, JSON.stringify(hook.body)).toBe(201)
    const { id: hookId, secret } = hook.body as { id: string, secret: string }
    r.secret = secret

    const t = await m.submit('random://?size=1KiB&seed=1', 'null://')
    await r.until(d => d.length === 1, 'the first attempt')
    const first = r.deliveries[0]
    expect(first.event).toMatchObject({ topic: `transfer.${t.id}.state`, data: { to: 'queued' } })
    await m.kill('coordinator', 'SIGKILL')

    // Down (connection refused) while the coordinator comes back and retries.
    await r.close()
    r.mode = 'ok'
    await m.startCoordinator(FLAGS)
    const log = async (): Promise<DeliveryLogEntry[]> => ((await m.api('GET', `/v1/webhooks/${hookId}/deliveries`)).body as { items: DeliveryLogEntry[] }).items
    await m.until(async () => (await log()).filter(l => l.outcome === 'retrying').length >= 2, 20_000, 'failed attempts while the receiver is down')
    await r.listen()
    await r.until(d => d.some(x => x.id === first.id && x.status === 204), 'the delivery after the restart')

    const accepted = r.deliveries.filter(d => d.id === first.id && d.status === 204)
    expect(accepted[0].event).toEqual(first.event)
    expect(accepted[0].body).toBe(first.body)
    expect(r.deliveries.every(d => d.verified)).toBe(true)
    const retried = (await log()).filter(l => l.messageId === first.id)
    expect(retried.some(l => l.outcome === 'retrying' && /ECONNREFUSED/.test(l.error ?? ''))).toBe(true)
    await m.until(async () => (await log()).some(l => l.messageId === first.id && l.outcome === 'delivered'), 10_000, 'the delivery in the log')
  })

  it('delivers an event committed just before SIGKILL', async () => {
    receiver = await Receiver.start()
    const r = receiver
    r.mode = 'fail'
    mesh = await TestMesh.create()
    const m = mesh
    await m.startCoordinator(FLAGS)
    const hook = await m.api('POST', '/v1/webhooks', { url: r.url, topics: ['transfer.*.state'] })
    r.secret = (hook.body as { secret: string }).secret
    const t = await m.submit('random://?size=1KiB&seed=2', 'null://')
    const canceled = await m.api('POST', `/v1/transfers/${t.id}/cancel`)
    expect(canceled.status).toBe(200)
    // Killed as soon as the change is answered: its delivery may not even have been tried.
    await m.kill('coordinator', 'SIGKILL')
    r.mode = 'ok'
    await m.startCoordinator(FLAGS)
    await r.until(d => d.some(x => x.status === 204 && x.event.data.to === 'canceled'), 'the canceled event')
    await r.until(d => d.some(x => x.status === 204 && x.event.data.to === 'queued'), 'the queued event')
    expect(r.deliveries.every(d => d.verified && d.event.topic === `transfer.${t.id}.state`)).toBe(true)
  })
})
