import type { Command } from 'commander'
import { addClientOptions, connect, usageError } from '../client.ts'
import type { ClientFlags } from '../client.ts'
import { LONG_POLL_S, isCursorExpired, oldestKept, readChanges } from '../feed.ts'
import type { FeedItem } from '../feed.ts'

export function eventsCommand (program: Command): void {
  addClientOptions(program.command('events')
    .description('print events from the change feed (GET /v1/changes), oldest first')
    .option('--follow', 'keep waiting for new events (Ctrl-C stops)')
    .option('--topics <patterns>', 'comma-separated topic patterns: * is one word, # any number, e.g. transfer.*.state,agent.#')
    .option('--since <now|seq>', 'start with this sequence number, or with what happens from now on (the default with --follow)')
    .option('--after <seq>', 'start after this sequence number (without --follow the default is 0: everything kept)'))
    .action(async (o: ClientFlags & { json?: boolean, follow?: boolean, topics?: string, after?: string, since?: string }) => {
      if (o.after !== undefined && o.since !== undefined) throw usageError('give --since or --after, not both')
      // A follower wants what happens next; replaying the whole history first would bury it.
      let after: number | 'now' = o.follow === true ? 'now' : 0
      if (o.after !== undefined) after = seq('--after', o.after)
      if (o.since === 'now') after = 'now'
      else if (o.since !== undefined) after = Math.max(0, seq('--since', o.since) - 1)
      const client = await connect(o)
      const stop = new AbortController()
      process.once('SIGINT', () => stop.abort())
      while (!stop.signal.aborted) {
        const before: number | 'now' = after
        let page
        try {
          page = await readChanges(client, after, o.follow === true ? LONG_POLL_S : 0, { topics: o.topics, signal: stop.signal })
        } catch (err) {
          if (stop.signal.aborted) break
          const oldest = isCursorExpired(err) ? oldestKept(err) : NaN
          if (!Number.isFinite(oldest) || after === 'now') throw err
          process.stderr.write(`staccato: events ${after + 1} to ${oldest - 1} are no longer kept; going on from ${oldest}\n`)
          after = oldest - 1
          continue
        }
        if (page === undefined) throw usageError(`the coordinator at ${client.url} has no change feed (GET /v1/changes)`)
        for (const item of page.items) print(item, o.json === true)
        after = after === 'now' ? page.next : Math.max(after, page.next)
        // Without --follow, stop once caught up: when the cursor no longer moves. (An empty page whose
        // cursor moved only skipped events the topics hide.)
        if (o.follow !== true && page.next === before) break
      }
    })
}

function seq (flag: string, text: string): number {
  const n = Number(text)
  if (text.trim() === '' || !Number.isSafeInteger(n) || n < 0) throw usageError(`${flag} '${text}' must be a whole number${flag === '--since' ? ' or now' : ''}`)
  return n
}

function print (item: FeedItem, json: boolean): void {
  // One JSON object per line, so that a script can read the stream as it comes.
  if (json) process.stdout.write(`${JSON.stringify(item)}\n`)
  else process.stdout.write(`${item.seq}  ${item.time}  ${item.topic}  ${JSON.stringify(item.data)}\n`)
}
