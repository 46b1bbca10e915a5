import type { StoreEvent, TransferRecord } from './model.ts'

export interface AuxPut { key: string, value: unknown }
export type AuxOp = { type: 'put', key: string, value: unknown } | { type: 'del', key: string }

/**
 * Extra records that must be written in the same atomic write as an event (a
 * webhook outbox), so that a crash can never keep the event and lose them.
 * Called once per event; the record is the transfer the event is about, when
 * there is one. Keys must be in an aux range (store-keys.ts).
 */
export type EventFanout = (event: StoreEvent, record: TransferRecord | undefined) => AuxPut[]

/**
 * The records coordinator/events owns: webhook subscriptions (`w!`), the
 * webhook outbox (`o!`, written with its event through the fan-out), the
 * delivery log (`d!`) and tenants' callback secrets (`k!`). Keys sort by
 * their bytes (store-keys.ts lists the layout) in every implementation.
 */
export interface AuxArea {
  /** Writes in order with every other write; `onWritten` runs before any later write starts. */
  writeAux (ops: AuxOp[], opts: { sync: boolean, onWritten?: () => void }): Promise<void>
  /** Records of one aux range, e.g. `{ ...range('w') }`, in key order. */
  readAux (r: { gt: string, lt: string, reverse?: boolean, limit?: number }): Promise<Array<[string, unknown]>>
  /** Installs (or removes) the function whose records join every event's write. */
  setFanout (fanout: EventFanout | undefined): void
}
